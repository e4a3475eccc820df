//! Command-line flags and the configuration they produce.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::faults::{Fault, Faults, UnknownFault};

/// The topology key every volume and the node carry (node-local volumes, the default).
pub const TOPOLOGY_KEY: &str = "topology.pvcheck.io/node";
/// … with `--zone` (volumes every node of the zone reaches).
pub const ZONE_KEY: &str = "topology.pvcheck.io/zone";

/// The environment variable that adds faults (comma-separated names).
pub const FAULTS_ENV: &str = "PVCHECK_TEST_CSI_FAULTS";

/// How a volume created for mount access is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backing {
    /// A directory, bind-mounted (needs no binary at all).
    Dir,
    /// A sparse image file on a loop device with a filesystem made by `mkfs.<fs_type>`.
    Image,
}

/// How NodePublishVolume serves a mount-access volume at the target path (block volumes are
/// always a bind of the loop device). Recorded per publication, so a driver started with
/// another value still tears down what an older process made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataPath {
    /// A bind mount of the staging path (what the driver always did).
    #[default]
    Bind,
    /// A FUSE passthrough of the staging path, served by a thread of the driver process: the
    /// mount dies with the process (ENOTCONN), like FUSE drivers that serve mounts from the node
    /// plugin (ceph-csi cephfs-fuse, blob-csi-driver, juicefs before its fix).
    FuseInside,
    /// The same passthrough served by a `fuse-daemon` process of its own (own session), which
    /// survives the driver's restart, like the drivers that fixed it.
    FuseOutside,
}

impl DataPath {
    pub const ALL: [DataPath; 3] = [DataPath::Bind, DataPath::FuseInside, DataPath::FuseOutside];

    pub fn name(self) -> &'static str {
        match self {
            DataPath::Bind => "bind",
            DataPath::FuseInside => "fuse-inside",
            DataPath::FuseOutside => "fuse-outside",
        }
    }

    pub fn is_fuse(self) -> bool {
        self != DataPath::Bind
    }
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataPath {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataPath::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| ConfigError::DataPath(s.to_string()))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "pvcheck-test-csi",
    version,
    about = "pvcheck's hostpath-style test CSI driver (test infrastructure, not for production)",
    after_help = "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while serving, 2 bad flags or endpoint."
)]
pub struct Args {
    /// CSI endpoint, unix:///path/to.sock (a stale socket there is replaced; any other file is refused)
    #[arg(long)]
    pub endpoint: String,
    /// Node id reported by NodeGetInfo and used in the topology (default: the host name)
    #[arg(long)]
    pub nodeid: Option<String>,
    /// CSI driver name
    #[arg(long, default_value = "hostpath.csi.pvcheck.io")]
    pub drivername: String,
    /// Directory holding volumes, snapshots and state.json (kept across restarts)
    #[arg(long, default_value = "/var/lib/pvcheck-test-csi")]
    pub statedir: PathBuf,
    /// Name of the state file under --statedir. A release that changes it forgets what the old
    /// one created (nothing is migrated): the state-forgetting upgrade of issue 20
    #[arg(long, value_name = "NAME", default_value = crate::state::STATE_FILE)]
    pub state_file: String,
    /// Let other pvcheck-test-csi processes use --statedir at the same time (a controller and
    /// a node plugin per node, as a shared-storage driver is deployed): no exclusive lock of
    /// the directory; every call takes the state file's lock and reads the state afresh
    #[arg(long)]
    pub shared_statedir: bool,
    /// The topology segment volumes and nodes carry: `topology.pvcheck.io/zone=ZONE` (every
    /// node with the zone reaches every volume: shared storage) instead of the default
    /// `topology.pvcheck.io/node=<nodeid>` (node-local volumes)
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Appended to vendor_version ("0.1.0+TAG"), so two builds can be told apart in an upgrade
    #[arg(long)]
    pub version_tag: Option<String>,
    /// Advertise PUBLISH_UNPUBLISH_VOLUME and serve ControllerPublish/Unpublish
    #[arg(long)]
    pub enable_attach: bool,
    /// How NodePublishVolume serves a mount-access volume: bind (a bind mount), fuse-inside (a
    /// FUSE passthrough served by the driver process: its mounts die with it), fuse-outside (a
    /// FUSE passthrough served by a daemon process of its own that outlives the driver)
    #[arg(
        long,
        value_name = "bind|fuse-inside|fuse-outside",
        default_value = "bind"
    )]
    pub data_path: String,
    /// Model a write-back cache lost on restart: NodePublishVolume checkpoints the volume's files,
    /// and a driver started with this flag rewrites every published volume's files to their
    /// checkpoint, so writes acknowledged (fsynced) since the publication vanish
    #[arg(long)]
    pub lose_acked_writes_on_restart: bool,
    /// Storage of mount-access volumes (block-access volumes are always images)
    #[arg(long, value_enum, default_value_t = Backing::Dir)]
    pub backing: Backing,
    /// NodeGetInfo's max_volumes_per_node (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub max_volumes_per_node: i64,
    /// Capacity of a volume created without a capacity range
    #[arg(long, default_value_t = 1 << 30)]
    pub default_volume_size: i64,
    /// Inject a fault (repeatable): publish-without-mount, lose-tail-at-unstage,
    /// bitflip-on-start, ok-for-unknown, not-idempotent, hang, stack-mounts. Also PVCHECK_TEST_CSI_FAULTS=a,b
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Byte offset bitflip-on-start flips in each volume (default: the middle; skipped with a
    /// log line where a volume is smaller)
    #[arg(long, value_name = "BYTES")]
    pub flip_at: Option<u64>,
    /// The CSI endpoint's path as kubelet sees it; with --registration-dir, serves kubelet's
    /// plugin-registration API on DIR/<drivername>-reg.sock
    #[arg(long, requires = "registration_dir")]
    pub kubelet_registration_path: Option<PathBuf>,
    /// kubelet's plugin registry directory (usually /var/lib/kubelet/plugins_registry)
    #[arg(long, requires = "kubelet_registration_path")]
    pub registration_dir: Option<PathBuf>,
}

/// `pvcheck-test-csi fuse-daemon …`: the `fuse-outside` daemon a driver starts (hidden; not for
/// people). It serves a FUSE passthrough of `--source` at `--mountpoint` until unmounted.
#[derive(Debug, Parser)]
#[command(
    name = "pvcheck-test-csi fuse-daemon",
    about = "The FUSE daemon of --data-path fuse-outside (started by the driver at NodePublishVolume)"
)]
pub struct DaemonArgs {
    /// Directory served (the volume's staging path)
    #[arg(long)]
    pub source: PathBuf,
    /// Where the FUSE filesystem is mounted (the publication's target path)
    #[arg(long)]
    pub mountpoint: PathBuf,
    /// Mount read-only
    #[arg(long)]
    pub readonly: bool,
    /// The volume, for log lines
    #[arg(long)]
    pub volume_id: Option<String>,
}

/// Registration settings (both flags given).
#[derive(Clone, Debug)]
pub struct Registration {
    pub kubelet_registration_path: PathBuf,
    pub registration_dir: PathBuf,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub socket: PathBuf,
    pub node_id: String,
    pub driver_name: String,
    pub state_dir: PathBuf,
    pub state_file: String,
    pub vendor_version: String,
    pub enable_attach: bool,
    pub backing: Backing,
    pub data_path: DataPath,
    pub lose_acked_writes_on_restart: bool,
    pub max_volumes_per_node: i64,
    pub default_volume_size: i64,
    pub faults: Faults,
    pub flip_at: Option<u64>,
    pub registration: Option<Registration>,
    /// `--shared-statedir`.
    pub shared_statedir: bool,
    /// The topology segment: (`topology.pvcheck.io/zone`, ZONE) with `--zone`, else
    /// (`topology.pvcheck.io/node`, the node id).
    pub topology: (String, String),
}

/// A flag that cannot be used, with the flag named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--endpoint {0:?}: expected unix:///absolute/path.sock")]
    Endpoint(String),
    #[error("--fault / {FAULTS_ENV}: {0}")]
    Fault(#[from] UnknownFault),
    #[error(
        "--drivername {0:?}: must be non-empty, at most 63 characters of [a-z0-9.-], starting and ending alphanumeric"
    )]
    DriverName(String),
    #[error("--nodeid: not given and the host name cannot be read")]
    NodeId,
    #[error("--default-volume-size {0}: must be positive")]
    DefaultSize(i64),
    #[error("--statedir {0:?}: must be an absolute path")]
    StateDir(PathBuf),
    #[error("--state-file {0:?}: must be a plain file name (no '/', not empty, not `lock`)")]
    StateFile(String),
    #[error("--data-path {0:?}: expected bind, fuse-inside or fuse-outside")]
    DataPath(String),
}

impl Args {
    pub fn into_config(self, env_faults: Option<&str>) -> Result<Config, ConfigError> {
        let socket = parse_endpoint(&self.endpoint)?;
        let flags = self
            .faults
            .iter()
            .map(|s| s.parse::<Fault>())
            .collect::<Result<Vec<_>, _>>()?;
        let faults = Faults::from_sources(&flags, env_faults)?;
        if !valid_driver_name(&self.drivername) {
            return Err(ConfigError::DriverName(self.drivername));
        }
        let node_id = match self.nodeid {
            Some(id) if !id.is_empty() => id,
            _ => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .ok_or(ConfigError::NodeId)?,
        };
        if self.default_volume_size <= 0 {
            return Err(ConfigError::DefaultSize(self.default_volume_size));
        }
        if !self.statedir.is_absolute() {
            return Err(ConfigError::StateDir(self.statedir));
        }
        if !valid_state_file(&self.state_file) {
            return Err(ConfigError::StateFile(self.state_file));
        }
        let data_path: DataPath = self.data_path.parse()?;
        let vendor_version = match self.version_tag {
            Some(tag) if !tag.is_empty() => format!("{}+{tag}", env!("CARGO_PKG_VERSION")),
            _ => env!("CARGO_PKG_VERSION").to_string(),
        };
        let registration = match (self.kubelet_registration_path, self.registration_dir) {
            (Some(kubelet_registration_path), Some(registration_dir)) => Some(Registration {
                kubelet_registration_path,
                registration_dir,
            }),
            _ => None,
        };
        let topology = match self.zone.filter(|z| !z.is_empty()) {
            Some(z) => (ZONE_KEY.to_string(), z),
            None => (TOPOLOGY_KEY.to_string(), node_id.clone()),
        };
        Ok(Config {
            socket,
            node_id,
            driver_name: self.drivername,
            state_dir: self.statedir,
            state_file: self.state_file,
            vendor_version,
            enable_attach: self.enable_attach,
            backing: self.backing,
            data_path,
            lose_acked_writes_on_restart: self.lose_acked_writes_on_restart,
            max_volumes_per_node: self.max_volumes_per_node,
            default_volume_size: self.default_volume_size,
            flip_at: self.flip_at,
            faults,
            registration,
            shared_statedir: self.shared_statedir,
            topology,
        })
    }
}

/// `unix:///abs/path` (or `unix:/abs/path`) → the path.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf, ConfigError> {
    let rest = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| ConfigError::Endpoint(endpoint.to_string()))?;
    let path = PathBuf::from(rest);
    if !path.is_absolute() || rest.len() <= 1 {
        return Err(ConfigError::Endpoint(endpoint.to_string()));
    }
    Ok(path)
}

/// A file directly under the statedir that is none of the driver's other entries.
fn valid_state_file(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.contains('\0')
        && !matches!(name, "." | ".." | "lock" | "volumes" | "snapshots")
}

/// The CSI spec's rule for a plugin name: a domain-name-like string of at most 63 characters.
fn valid_driver_name(name: &str) -> bool {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= 63
        && ok_chars
        && ends_ok(name.chars().next())
        && ends_ok(name.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_be_an_absolute_unix_path() {
        assert_eq!(
            parse_endpoint("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            parse_endpoint("unix:/run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(parse_endpoint("tcp://1.2.3.4:5").is_err());
        assert!(parse_endpoint("unix://relative.sock").is_err());
        assert!(parse_endpoint("unix:///").is_err());
    }

    #[test]
    fn driver_names_follow_the_spec() {
        assert!(valid_driver_name("hostpath.csi.pvcheck.io"));
        assert!(!valid_driver_name("Hostpath"));
        assert!(!valid_driver_name("-x"));
        assert!(!valid_driver_name(&"a".repeat(64)));
    }

    #[test]
    fn the_state_file_is_a_plain_name_beside_the_driver_s_own_entries() {
        assert!(valid_state_file("state.json"));
        assert!(valid_state_file("volumes.json"));
        for bad in ["", "a/b", "/abs", "..", "lock", "volumes", "snapshots"] {
            assert!(!valid_state_file(bad), "{bad:?} accepted");
        }
        let args = Args::parse_from([
            "pvcheck-test-csi",
            "--endpoint=unix:///run/x.sock",
            "--nodeid=n",
            "--state-file=../state.json",
        ]);
        let e = args.into_config(None).unwrap_err().to_string();
        assert!(e.starts_with("--state-file \"../state.json\""), "{e}");
    }

    #[test]
    fn data_path_names_round_trip_and_an_unknown_one_is_named_in_one_line() {
        for d in DataPath::ALL {
            assert_eq!(d.name().parse::<DataPath>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.name()));
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "pvcheck-test-csi",
                "--endpoint=unix:///run/x.sock",
                "--nodeid=n",
            ];
            argv.extend_from_slice(extra);
            Args::parse_from(argv).into_config(None)
        };
        let c = parse(&[]).unwrap();
        assert_eq!(c.data_path, DataPath::Bind);
        assert!(!c.lose_acked_writes_on_restart);
        let c = parse(&["--data-path=fuse-outside", "--lose-acked-writes-on-restart"]).unwrap();
        assert_eq!(c.data_path, DataPath::FuseOutside);
        assert!(c.lose_acked_writes_on_restart);
        let e = parse(&["--data-path=fuse"]).unwrap_err().to_string();
        assert_eq!(
            e,
            "--data-path \"fuse\": expected bind, fuse-inside or fuse-outside"
        );
        assert!(!e.contains('\n'));
    }
}
