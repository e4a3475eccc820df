//! The `local.csi` class kind: a CSI driver called over its unix socket as kubelet and the
//! sidecars call it (see `platform::local::csi`).
//!
//! ```yaml
//!   - name: hostpath-csi
//!     local:
//!       csi:
//!         # either a socket a running driver listens on …
//!         endpoint: unix:///var/lib/csi/sockets/hostpath.sock
//!         # … or a command pvcheck starts (and stops) itself, one per volume; {endpoint},
//!         # {node_id} and {state_dir} (an empty directory pvcheck owns) are filled in
//!         command: [./bin/hostpathplugin, --endpoint={endpoint}, --nodeid={node_id}, --statedir={state_dir}]
//!         parameters: {}                 # CreateVolume parameters, as a StorageClass's
//!         access_type: mount             # or block
//!         fs_type: ext4                  # mount only
//!         mount_flags: []                # VolumeCapability.mount.mount_flags
//!         secrets: { provisioner: {}, controller_publish: {}, node_stage: {}, node_publish: {},
//!                    controller_expand: {}, node_expand: {}, snapshotter: {} }
//!         call_timeout: 2m               # deadline of every call
//!         start_timeout: 1m              # until a started driver answers Probe ready
//!         retry_after_timeout: false     # true: after a missed call_timeout, later trials still call
//!     upgrade:
//!       csi: { command: [./bin/hostpathplugin-v2, …] }   # restarted on the same socket
//!       rollback: true
//! ```
//! Secret values never appear in output, logs or results: only their names.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pvcheck_workloads::units::Dur;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::ConfigError;

/// Placeholders a `command` may use.
pub const PLACEHOLDERS: [&str; 3] = ["{endpoint}", "{node_id}", "{state_dir}"];

/// `local: { csi: … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiSpec {
    /// `unix:///path` (or an absolute path) of a socket a running driver listens on.
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    /// A driver command pvcheck starts per volume and stops afterwards.
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    /// CreateVolume parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub access_type: AccessType,
    /// VolumeCapability.mount.fs_type (mount only).
    #[serde(default)]
    pub fs_type: Option<String>,
    /// VolumeCapability.mount.mount_flags (mount only).
    #[serde(default)]
    pub mount_flags: Vec<String>,
    #[serde(default)]
    pub secrets: CsiSecrets,
    /// Deadline of every call (default 2m).
    #[serde(default)]
    pub call_timeout: Option<Dur>,
    /// Until a started driver's socket answers Probe with ready (default 1m).
    #[serde(default)]
    pub start_timeout: Option<Dur>,
    /// Once a call missed `call_timeout`, the class's remaining trials fail at once as
    /// `timeout` ("the driver stopped answering"); `true` lets each trial call (and wait) again.
    #[serde(default)]
    pub retry_after_timeout: bool,
    /// `endpoint` as a path, or `command` resolved, by the loader.
    #[serde(skip)]
    pub resolved: Option<CsiDriverSource>,
}

/// How a class reaches its driver, after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsiDriverSource {
    /// A socket someone else's driver listens on.
    Endpoint(PathBuf),
    /// argv, the program resolved to an absolute path.
    Command(Vec<String>),
}

/// `access_type: mount | block`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessType {
    #[default]
    Mount,
    Block,
}

impl AccessType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessType::Mount => "mount",
            AccessType::Block => "block",
        }
    }
}

/// Secrets per call, as a StorageClass's `csi.storage.k8s.io/*-secret-name` give them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiSecrets {
    /// CreateVolume, DeleteVolume (external-provisioner).
    #[serde(default)]
    pub provisioner: BTreeMap<String, String>,
    #[serde(default)]
    pub controller_publish: BTreeMap<String, String>,
    #[serde(default)]
    pub node_stage: BTreeMap<String, String>,
    #[serde(default)]
    pub node_publish: BTreeMap<String, String>,
    #[serde(default)]
    pub controller_expand: BTreeMap<String, String>,
    #[serde(default)]
    pub node_expand: BTreeMap<String, String>,
    /// CreateSnapshot, DeleteSnapshot (external-snapshotter).
    #[serde(default)]
    pub snapshotter: BTreeMap<String, String>,
}

impl CsiSecrets {
    /// Every secret value, for masking.
    pub fn values(&self) -> Vec<String> {
        [
            &self.provisioner,
            &self.controller_publish,
            &self.node_stage,
            &self.node_publish,
            &self.controller_expand,
            &self.node_expand,
            &self.snapshotter,
        ]
        .iter()
        .flat_map(|m| m.values().cloned())
        .filter(|v| !v.is_empty())
        .collect()
    }
    /// `{call: [key names]}`, for results (never the values).
    pub fn names(&self) -> serde_json::Value {
        let keys = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        serde_json::json!({
            "provisioner": keys(&self.provisioner),
            "controller_publish": keys(&self.controller_publish),
            "node_stage": keys(&self.node_stage),
            "node_publish": keys(&self.node_publish),
            "controller_expand": keys(&self.controller_expand),
            "node_expand": keys(&self.node_expand),
            "snapshotter": keys(&self.snapshotter),
        })
    }
}

/// `upgrade: { csi: { command: [...] } }`: the new node plugin, started on the same socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiUpgradeSpec {
    pub command: Spanned<Vec<String>>,
    /// `command` resolved by the loader.
    #[serde(skip)]
    pub resolved: Vec<String>,
}

impl CsiSpec {
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(120))
    }
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60))
    }
    pub fn source(&self) -> Option<&CsiDriverSource> {
        self.resolved.as_ref()
    }
    /// The class parameters as they go into a run's fingerprint: no secret values.
    pub fn parameters_json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint.as_ref().map(|e| &e.value),
            "command": self.command.as_ref().map(|c| &c.value),
            "parameters": self.parameters,
            "access_type": self.access_type,
            "fs_type": self.fs_type,
            "mount_flags": self.mount_flags,
            "secrets": self.secrets.names(),
        })
    }
}

/// Where a `unix://` endpoint's socket is: `unix:///abs/path` or `/abs/path`.
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf, String> {
    let p = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    let p = Path::new(p);
    if !p.is_absolute() {
        return Err(format!(
            "{endpoint:?} is not a unix socket endpoint: use unix:///absolute/path"
        ));
    }
    Ok(p.to_path_buf())
}

/// Checks the section and resolves the driver; `at` is the line of the class, `field` makes
/// `classes[i].<f>`.
pub fn check(
    spec: &mut CsiSpec,
    upgrade: Option<&mut CsiUpgradeSpec>,
    file: &Path,
    base: &Path,
    class_line: u64,
    field: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let err = |line: u64, f: &str, msg: String| ConfigError::new(file, Some(line), field(f), msg);
    spec.resolved = Some(match (&spec.endpoint, &spec.command) {
        (Some(e), Some(_)) => {
            return Err(err(
                e.referenced.line(),
                "local.csi",
                "give either `endpoint` (a running driver) or `command` (pvcheck starts it), not both".into(),
            ));
        }
        (None, None) => {
            return Err(err(
                class_line,
                "local.csi",
                "give `endpoint` (a running driver's socket) or `command` (pvcheck starts the driver)".into(),
            ));
        }
        (Some(e), None) => {
            let line = e.referenced.line();
            let path = endpoint_path(&e.value).map_err(|m| err(line, "local.csi.endpoint", m))?;
            match std::fs::metadata(&path) {
                Err(er) => {
                    return Err(err(
                        line,
                        "local.csi.endpoint",
                        format!("{}: {er} (is the driver running?)", path.display()),
                    ));
                }
                Ok(m) if !m.file_type().is_socket() => {
                    return Err(err(
                        line,
                        "local.csi.endpoint",
                        format!("{} is not a unix socket", path.display()),
                    ));
                }
                Ok(_) => {}
            }
            CsiDriverSource::Endpoint(path)
        }
        (None, Some(c)) => CsiDriverSource::Command(
            resolve_command(&c.value, base)
                .map_err(|m| err(c.referenced.line(), "local.csi.command", m))?,
        ),
    });
    if spec.access_type == AccessType::Block
        && (spec.fs_type.is_some() || !spec.mount_flags.is_empty())
    {
        return Err(err(
            class_line,
            "local.csi.fs_type",
            "access_type block has no filesystem: drop fs_type and mount_flags".into(),
        ));
    }
    for (name, t) in [
        ("call_timeout", spec.call_timeout),
        ("start_timeout", spec.start_timeout),
    ] {
        if t.is_some_and(|d| d.0.is_zero()) {
            return Err(err(
                class_line,
                &format!("local.csi.{name}"),
                "must be longer than 0s".into(),
            ));
        }
    }
    if let Some(u) = upgrade {
        let line = u.command.referenced.line();
        if matches!(spec.resolved, Some(CsiDriverSource::Endpoint(_))) {
            return Err(err(
                line,
                "upgrade.csi",
                "upgrade.csi restarts a driver pvcheck started (local.csi.command); to upgrade a driver you run at `endpoint`, give upgrade.command (pvcheck waits for its socket to answer again)".into(),
            ));
        }
        u.resolved = resolve_command(&u.command.value, base)
            .map_err(|m| err(line, "upgrade.csi.command", m))?;
    }
    Ok(())
}

/// argv with its program resolved: a path with a `/` relative to the class file, else `$PATH`;
/// it must be an executable file, and `{endpoint}` must appear in an argument.
fn resolve_command(argv: &[String], base: &Path) -> Result<Vec<String>, String> {
    let Some(prog) = argv.first().filter(|p| !p.is_empty()) else {
        return Err("is empty: give the driver's program and its arguments".into());
    };
    let path = if prog.contains('/') {
        let p = Path::new(prog);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    } else {
        crate::sys::which(prog).ok_or_else(|| format!("{prog} is not on PATH"))?
    };
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&path) {
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(m) if !m.is_file() => return Err(format!("{} is not a file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            return Err(format!("{} is not executable", path.display()));
        }
        Ok(_) => {}
    }
    if !argv[1..].iter().any(|a| a.contains("{endpoint}")) {
        return Err(
            "no argument holds {endpoint}: the driver must listen where pvcheck connects".into(),
        );
    }
    for a in &argv[1..] {
        let mut rest = a.as_str();
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            if let Some(j) = tail.find('}') {
                let word = &tail[..=j];
                if !PLACEHOLDERS.contains(&word) {
                    return Err(format!(
                        "unknown placeholder {word} in {a:?} (known: {})",
                        PLACEHOLDERS.join(", ")
                    ));
                }
                rest = &tail[j + 1..];
            } else {
                break;
            }
        }
    }
    let mut out = vec![path.display().to_string()];
    out.extend(argv[1..].iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_needs_an_absolute_unix_path() {
        assert_eq!(
            endpoint_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(endpoint_path("unix://run/x.sock").is_err());
        assert!(endpoint_path("tcp://1.2.3.4:5").is_err());
    }

    #[test]
    fn a_command_without_endpoint_placeholder_is_refused() {
        let e = resolve_command(&["/bin/true".into(), "--x".into()], Path::new("/")).unwrap_err();
        assert!(e.contains("{endpoint}"), "{e}");
        let e = resolve_command(
            &[
                "/bin/true".into(),
                "{endpoint}".into(),
                "--n={nodeid}".into(),
            ],
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("unknown placeholder"), "{e}");
        assert!(
            resolve_command(&["/bin/true".into(), "{endpoint}".into()], Path::new("/")).is_ok()
        );
    }
}
