//! Generates the CSI server (and the client the tests use) from the CSI spec v1.12.0 proto
//! vendored by the harness (`harness/proto/csi/csi.proto`, Apache-2.0), and kubelet's plugin
//! registration service from our own `proto/pluginregistration/api.proto`. `protox` parses the
//! protos in pure Rust, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../harness/proto/csi/csi.proto");
    println!("cargo:rerun-if-changed=proto/pluginregistration/api.proto");
    let csi = protox::compile(["csi.proto"], ["../../harness/proto/csi"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(csi)?;
    let registration = protox::compile(["api.proto"], ["proto/pluginregistration"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(registration)?;
    Ok(())
}
