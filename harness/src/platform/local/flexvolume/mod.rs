//! flexVolume: drivers called exactly as kubelet and the controller manager call them.
//!
//! - [`call`]: run the executable once, bounded in time and output;
//! - [`protocol`]: what each reply must hold;
//! - [`options`]: the JSON options kubelet passes, and secret masking;
//! - [`driver`]: a driver with its timeouts, transcript and identity;
//! - [`mounts`]: what the kernel says is mounted;
//! - [`kubelet`]: the call sequence for a volume and a pod;
//! - [`conformance`]: the protocol checks that become `<class>::flexvolume::<call>` trials;
//! - [`embedded`]: the sample drivers shipped in the binary.

pub mod call;
pub mod conformance;
pub mod driver;
pub mod embedded;
pub mod error;
pub mod kubelet;
pub mod mounts;
pub mod options;
pub mod protocol;

pub use driver::{Driver, DriverIdentity, Timeouts, identity};
pub use error::{FlexError, ProtocolViolation};
pub use kubelet::{Kubelet, Layout, Mounted};
pub use options::{PodInfo, VolumeOptions};
pub use protocol::{Breach, Call, Capabilities, Reply, Status};
