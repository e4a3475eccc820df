//! Storage-class definitions: what the YAML files say, checked strictly.
//!
//! A class file is `classes: [ ... ]`; every class has a unique `name` (`[a-z0-9-]`) and, for the
//! local platform, a `local:` section naming one kind of volume:
//!
//! - `dir: PATH`: every volume is a fresh subdirectory of PATH (no mount, no root needed);
//! - `loop: { fs, size, mkfs_options, mount_options, image_dir }`: a fresh image file per volume,
//!   formatted with `mkfs.<fs>` and loop-mounted (root needed);
//! - `flexvolume: { ... }`: a flexVolume driver called as kubelet calls it (see
//!   [`flexvolume`]; built in the flexVolume work, issue 5).
//!
//! For the Kubernetes platform a class carries `kube:` (StorageClass or PV template, access
//! modes, volume mode, size, snapshot class) and `placement:` (see [`kube`]).
//!
//! Unknown fields, duplicate names, sizes or durations without a unit and missing paths are errors
//! that name the file, the line and the field ([`ConfigError`]): a typo silently ignored is how
//! kubernetes#71589 hid bugs. Relative paths are relative to the YAML file that holds them.
//! The default class file (`storageclasses/local.yaml`) is compiled into the binary
//! ([`DEFAULT_CLASSES`]) so `pvcheck run` works from any directory.

pub mod csi;
mod error;
pub mod flexvolume;
pub mod kube;
mod limits;
mod load;
mod messages;
mod spec;
pub mod thresholds;

pub use error::ConfigError;
pub use flexvolume::{DriverSource, FlexvolumeSpec};
pub use load::{DEFAULT_CLASSES, DEFAULT_CLASSES_NAME, load_default, load_files, parse_str};
pub use spec::{Capabilities, ClassSpec, FsType, LocalKind, LoopSpec, Timeouts, UpgradeSpec};
