//! pvcheck-test-csi: a hostpath-style CSI driver that exists only to test pvcheck.
//!
//! It serves the CSI Identity, Controller and Node services on one unix socket (volumes are
//! directories or sparse image files under `--statedir`), optionally kubelet's plugin
//! registration API (so a test cluster needs no node-driver-registrar), and can inject the
//! faults of pvcheck's CSI fault zoo, and fail across a restart the way real node plugins do
//! (`--data-path fuse-inside|fuse-outside`, `--lose-acked-writes-on-restart`). Every mount and loop device is made with syscalls, so the
//! static binary runs in an image with nothing else in it. See README.md.

pub mod checkpoint;
pub mod config;
pub mod controller;
pub mod copy;
pub mod driver;
pub mod fault_actions;
pub mod faults;
pub mod fuse_path;
pub mod identity;
pub mod ids;
pub mod loopdev;
pub mod mounts;
pub mod node;
pub mod passthrough;
pub mod registration;
pub mod serve;
pub mod state;
pub mod store;

/// Generated CSI v1.12 messages and services.
pub mod csi {
    tonic::include_proto!("csi.v1");
}

/// Generated kubelet plugin-registration messages and service.
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// One line on stderr, prefixed so it stands out in a harness's captured log.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("pvcheck-test-csi: {}", format!($($arg)*))
    };
}
