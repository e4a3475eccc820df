//! The CSI v1 messages and services, generated at build time from the vendored spec
//! (`harness/proto/csi/csi.proto`, CSI v1.12.0) by `build.rs`.
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

tonic::include_proto!("csi.v1");
