//! The container orchestrator's side: the calls kubelet and the sidecars make, in their order,
//! each reply checked against the spec and each mount call against the kernel.
//!
//! - external-provisioner: Probe, GetPluginInfo, GetPluginCapabilities,
//!   ControllerGetCapabilities, then CreateVolume with the node's topology as requirements;
//! - external-attacher: ControllerPublishVolume when the controller has PUBLISH_UNPUBLISH_VOLUME;
//! - kubelet: NodeGetInfo, NodeGetCapabilities, NodeStageVolume into the volume's global
//!   staging directory when the node has STAGE_UNSTAGE_VOLUME, NodePublishVolume into the pod's
//!   target path (kubelet creates the parent, the plugin the target), and the reverse;
//! - external-resizer: ControllerExpandVolume, then kubelet's NodeExpandVolume when
//!   `node_expansion_required`;
//! - external-snapshotter: CreateSnapshot (repeated until ready_to_use), restore and clone as
//!   CreateVolume with a content source.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::call::Call;
use super::client::CsiClient;
use super::error::CsiError;
use super::proto;
use super::proto::controller_client::ControllerClient;
use super::proto::identity_client::IdentityClient;
use super::proto::node_client::NodeClient;
use super::reply;
use crate::config::csi::{AccessType, CsiSpec};
use crate::sys;

/// What the plugin said it can do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Caps {
    pub name: String,
    pub vendor_version: String,
    pub controller_service: bool,
    pub accessibility_constraints: bool,
    pub online_expansion: bool,
    pub offline_expansion: bool,
    pub create_delete_volume: bool,
    pub publish_unpublish: bool,
    pub controller_expand: bool,
    pub snapshots: bool,
    pub clone: bool,
    pub stage_unstage: bool,
    pub volume_stats: bool,
    pub node_expand: bool,
    pub node_id: String,
    pub topology: Option<HashMap<String, String>>,
}

/// A volume the plugin created.
#[derive(Debug, Clone)]
pub struct CsiVolume {
    pub name: String,
    pub id: String,
    pub capacity: u64,
    pub context: HashMap<String, String>,
}

/// A volume published to a "pod".
#[derive(Debug, Clone)]
pub struct Published {
    pub volume_id: String,
    pub publish_context: HashMap<String, String>,
    pub controller_published: bool,
    pub staging: Option<PathBuf>,
    pub target: PathBuf,
}

/// Where kubelet would stage and publish a volume, under a root pvcheck owns.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `plugins/kubernetes.io/csi/<driver>/<volume>/globalmount`.
    pub staging: PathBuf,
    /// `pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount` (a directory the plugin creates) or,
    /// for block, `…/volumeDevices/kubernetes.io~csi/<volume>` (a file).
    pub target: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, volume: &str, pod_uid: &str, access: AccessType) -> Self {
        let staging = root
            .join("plugins/kubernetes.io/csi/pvcheck")
            .join(volume)
            .join("globalmount");
        let target = match access {
            AccessType::Mount => root
                .join("pods")
                .join(pod_uid)
                .join("volumes/kubernetes.io~csi")
                .join(volume)
                .join("mount"),
            AccessType::Block => root
                .join("pods")
                .join(pod_uid)
                .join("volumeDevices/kubernetes.io~csi")
                .join(volume),
        };
        Paths { staging, target }
    }
}

/// One CO talking to one driver with the class's settings.
pub struct Co<'a> {
    pub client: &'a CsiClient,
    pub spec: &'a CsiSpec,
    pub caps: Caps,
}

fn code_of(e: &CsiError) -> Option<&str> {
    e.code()
}

impl<'a> Co<'a> {
    /// The provisioner's and kubelet's discovery: identity, capabilities, node info.
    pub fn discover(client: &'a CsiClient, spec: &'a CsiSpec) -> Result<Co<'a>, CsiError> {
        let mut caps = Caps::default();
        let req = proto::ProbeRequest {};
        let probe = client.call(Call::Probe, req, |ch, r| async move {
            IdentityClient::new(ch).probe(r).await
        })?;
        reply::probe(&probe).map_err(|m| client.violation(Call::Probe, m, &req, &probe))?;
        let req = proto::GetPluginInfoRequest {};
        let info = client.call(Call::GetPluginInfo, req, |ch, r| async move {
            IdentityClient::new(ch).get_plugin_info(r).await
        })?;
        reply::plugin_info(&info)
            .map_err(|m| client.violation(Call::GetPluginInfo, m, &req, &info))?;
        caps.name = info.name;
        caps.vendor_version = info.vendor_version;
        let pc = client.call(
            Call::GetPluginCapabilities,
            proto::GetPluginCapabilitiesRequest {},
            |ch, r| async move { IdentityClient::new(ch).get_plugin_capabilities(r).await },
        )?;
        reply::plugin_capabilities(&pc, &mut caps);
        if caps.controller_service {
            let cc = client.call(
                Call::ControllerGetCapabilities,
                proto::ControllerGetCapabilitiesRequest {},
                |ch, r| async move {
                    ControllerClient::new(ch)
                        .controller_get_capabilities(r)
                        .await
                },
            )?;
            reply::controller_capabilities(&cc, &mut caps);
        }
        let nc = client.call(
            Call::NodeGetCapabilities,
            proto::NodeGetCapabilitiesRequest {},
            |ch, r| async move { NodeClient::new(ch).node_get_capabilities(r).await },
        )?;
        reply::node_capabilities(&nc, &mut caps);
        let req = proto::NodeGetInfoRequest {};
        let ni = client.call(Call::NodeGetInfo, req, |ch, r| async move {
            NodeClient::new(ch).node_get_info(r).await
        })?;
        (caps.node_id, caps.topology) =
            reply::node_info(&ni).map_err(|m| client.violation(Call::NodeGetInfo, m, &req, &ni))?;
        Ok(Co { client, spec, caps })
    }

    /// The capability pvcheck asks for: single-node writer, mount (fs_type, flags) or block.
    pub fn capability(&self) -> proto::VolumeCapability {
        use proto::volume_capability::{AccessMode, AccessType as AT, BlockVolume, MountVolume};
        let access_type = match self.spec.access_type {
            AccessType::Mount => AT::Mount(MountVolume {
                fs_type: self.spec.fs_type.clone().unwrap_or_default(),
                mount_flags: self.spec.mount_flags.clone(),
                volume_mount_group: String::new(),
            }),
            AccessType::Block => AT::Block(BlockVolume {}),
        };
        proto::VolumeCapability {
            access_mode: Some(AccessMode {
                mode: proto::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(access_type),
        }
    }

    /// The provisioner's CreateVolume request for `name` of at least `size` bytes.
    pub fn create_request(
        &self,
        name: &str,
        size: u64,
        source: Option<proto::VolumeContentSource>,
    ) -> proto::CreateVolumeRequest {
        let requirements = match (&self.caps.topology, self.caps.accessibility_constraints) {
            (Some(segments), true) => {
                let t = proto::Topology {
                    segments: segments.clone(),
                };
                Some(proto::TopologyRequirement {
                    requisite: vec![t.clone()],
                    preferred: vec![t],
                })
            }
            _ => None,
        };
        proto::CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(proto::CapacityRange {
                required_bytes: size as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![self.capability()],
            parameters: self.spec.parameters.clone().into_iter().collect(),
            secrets: self.spec.secrets.provisioner.clone().into_iter().collect(),
            volume_content_source: source,
            accessibility_requirements: requirements,
            mutable_parameters: HashMap::new(),
        }
    }

    /// CreateVolume, its reply checked: an id, capacity ≥ required, the source carried through.
    pub fn create_volume(&self, req: proto::CreateVolumeRequest) -> Result<CsiVolume, CsiError> {
        let shown = req.clone();
        let resp = self
            .client
            .call(Call::CreateVolume, req, |ch, r| async move {
                ControllerClient::new(ch).create_volume(r).await
            })?;
        reply::created_volume(&shown, &resp)
            .map_err(|m| self.client.violation(Call::CreateVolume, m, &shown, &resp))
    }

    pub fn delete_volume(&self, id: &str) -> Result<(), CsiError> {
        let req = proto::DeleteVolumeRequest {
            volume_id: id.into(),
            secrets: self.spec.secrets.provisioner.clone().into_iter().collect(),
        };
        self.client
            .call(Call::DeleteVolume, req, |ch, r| async move {
                ControllerClient::new(ch).delete_volume(r).await
            })
            .map(|_| ())
    }

    pub fn controller_publish_request(
        &self,
        vol: &CsiVolume,
    ) -> proto::ControllerPublishVolumeRequest {
        proto::ControllerPublishVolumeRequest {
            volume_id: vol.id.clone(),
            node_id: self.caps.node_id.clone(),
            volume_capability: Some(self.capability()),
            readonly: false,
            secrets: self
                .spec
                .secrets
                .controller_publish
                .clone()
                .into_iter()
                .collect(),
            volume_context: vol.context.clone(),
        }
    }

    pub fn controller_publish(
        &self,
        req: proto::ControllerPublishVolumeRequest,
    ) -> Result<HashMap<String, String>, CsiError> {
        self.client
            .call(Call::ControllerPublishVolume, req, |ch, r| async move {
                ControllerClient::new(ch).controller_publish_volume(r).await
            })
            .map(|r| r.publish_context)
    }

    pub fn controller_unpublish(&self, volume_id: &str) -> Result<(), CsiError> {
        let req = proto::ControllerUnpublishVolumeRequest {
            volume_id: volume_id.into(),
            node_id: self.caps.node_id.clone(),
            secrets: self
                .spec
                .secrets
                .controller_publish
                .clone()
                .into_iter()
                .collect(),
        };
        self.client
            .call(Call::ControllerUnpublishVolume, req, |ch, r| async move {
                ControllerClient::new(ch)
                    .controller_unpublish_volume(r)
                    .await
            })
            .map(|_| ())
    }

    pub fn stage_request(
        &self,
        vol: &CsiVolume,
        publish_context: &HashMap<String, String>,
        staging: &Path,
    ) -> proto::NodeStageVolumeRequest {
        proto::NodeStageVolumeRequest {
            volume_id: vol.id.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(self.capability()),
            secrets: self.spec.secrets.node_stage.clone().into_iter().collect(),
            volume_context: vol.context.clone(),
        }
    }

    pub fn node_stage(&self, req: proto::NodeStageVolumeRequest) -> Result<(), CsiError> {
        // kubelet creates the staging directory (for block too: a directory the plugin uses).
        let dir = PathBuf::from(&req.staging_target_path);
        std::fs::create_dir_all(&dir).map_err(|source| CsiError::Io {
            call: Call::NodeStageVolume,
            what: format!("creating {}", dir.display()),
            source,
        })?;
        self.client
            .call(Call::NodeStageVolume, req, |ch, r| async move {
                NodeClient::new(ch).node_stage_volume(r).await
            })
            .map(|_| ())
    }

    pub fn node_unstage(&self, volume_id: &str, staging: &Path) -> Result<(), CsiError> {
        let req = proto::NodeUnstageVolumeRequest {
            volume_id: volume_id.into(),
            staging_target_path: staging.display().to_string(),
        };
        // Retried as the unpublish is: a FUSE staging mount stays busy for a moment after the
        // last publication goes (CI stop 30: EBUSY once, then fine).
        retry_busy(|| {
            self.client
                .call(Call::NodeUnstageVolume, req.clone(), |ch, r| async move {
                    NodeClient::new(ch).node_unstage_volume(r).await
                })
                .map(|_| ())
        })?;
        let left = mounts_at(staging);
        if left > 0 {
            return Err(CsiError::Kernel {
                call: Call::NodeUnstageVolume,
                what: format!(
                    "answered OK but {} is still mounted ({left} mount(s))",
                    staging.display()
                ),
            });
        }
        Ok(())
    }

    pub fn publish_request(
        &self,
        vol: &CsiVolume,
        publish_context: &HashMap<String, String>,
        staging: Option<&Path>,
        target: &Path,
    ) -> proto::NodePublishVolumeRequest {
        proto::NodePublishVolumeRequest {
            volume_id: vol.id.clone(),
            publish_context: publish_context.clone(),
            staging_target_path: staging.map(|s| s.display().to_string()).unwrap_or_default(),
            target_path: target.display().to_string(),
            volume_capability: Some(self.capability()),
            readonly: false,
            secrets: self.spec.secrets.node_publish.clone().into_iter().collect(),
            volume_context: vol.context.clone(),
        }
    }

    /// NodePublishVolume (kubelet creates the target's parent), then the kernel must show one
    /// mount at the target: a directory for mount, a block device for block.
    pub fn node_publish(&self, req: proto::NodePublishVolumeRequest) -> Result<(), CsiError> {
        let target = PathBuf::from(&req.target_path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CsiError::Io {
                call: Call::NodePublishVolume,
                what: format!("creating {}", parent.display()),
                source,
            })?;
        }
        self.client
            .call(Call::NodePublishVolume, req, |ch, r| async move {
                NodeClient::new(ch).node_publish_volume(r).await
            })?;
        self.check_published(&target)
    }

    /// The target is a mount point, mounted once, of the right type.
    pub fn check_published(&self, target: &Path) -> Result<(), CsiError> {
        let call = Call::NodePublishVolume;
        let n = mounts_at(target);
        if n == 0 {
            return Err(CsiError::Kernel {
                call,
                what: format!(
                    "answered OK but {} is not a mount point: the pod would write to the node's root filesystem",
                    target.display()
                ),
            });
        }
        if n > 1 {
            return Err(CsiError::Kernel {
                call,
                what: format!(
                    "{} has {n} mounts stacked on it: a repeated NodePublishVolume mounted again",
                    target.display()
                ),
            });
        }
        let md = std::fs::metadata(target).map_err(|source| CsiError::Io {
            call,
            what: format!("stat {}", target.display()),
            source,
        })?;
        match self.spec.access_type {
            AccessType::Mount if !md.is_dir() => Err(CsiError::Kernel {
                call,
                what: format!("{} is mounted but not a directory", target.display()),
            }),
            AccessType::Block if !md.file_type().is_block_device() => Err(CsiError::Kernel {
                call,
                what: format!(
                    "access_type block, but {} is not a block device",
                    target.display()
                ),
            }),
            _ => Ok(()),
        }
    }

    pub fn node_unpublish(&self, volume_id: &str, target: &Path) -> Result<(), CsiError> {
        let req = proto::NodeUnpublishVolumeRequest {
            volume_id: volume_id.into(),
            target_path: target.display().to_string(),
        };
        retry_busy(|| {
            self.client
                .call(Call::NodeUnpublishVolume, req.clone(), |ch, r| async move {
                    NodeClient::new(ch).node_unpublish_volume(r).await
                })
                .map(|_| ())
        })?;
        let left = mounts_at(target);
        if left > 0 {
            return Err(CsiError::Kernel {
                call: Call::NodeUnpublishVolume,
                what: format!(
                    "answered OK but {} is still mounted ({left} mount(s))",
                    target.display()
                ),
            });
        }
        Ok(())
    }

    /// Attach (if the controller publishes), stage (if the node stages), publish.
    pub fn publish(&self, vol: &CsiVolume, paths: &Paths) -> Result<Published, CsiError> {
        let mut p = Published {
            volume_id: vol.id.clone(),
            publish_context: HashMap::new(),
            controller_published: false,
            staging: None,
            target: paths.target.clone(),
        };
        let r = (|| {
            if self.caps.publish_unpublish {
                p.controller_published = true;
                p.publish_context =
                    self.controller_publish(self.controller_publish_request(vol))?;
            }
            if self.caps.stage_unstage {
                p.staging = Some(paths.staging.clone());
                self.node_stage(self.stage_request(vol, &p.publish_context, &paths.staging))?;
            }
            self.node_publish(self.publish_request(
                vol,
                &p.publish_context,
                p.staging.as_deref(),
                &paths.target,
            ))
        })();
        match r {
            Ok(()) => Ok(p),
            Err(e) => {
                let _ = self.unpublish(&p);
                Err(e)
            }
        }
    }

    /// The reverse of [`Co::publish`]: every step is tried, the first error is returned.
    pub fn unpublish(&self, p: &Published) -> Result<(), CsiError> {
        let mut first = None;
        let mut note = |r: Result<(), CsiError>| {
            if let Err(e) = r
                && first.is_none()
            {
                first = Some(e);
            }
        };
        note(self.node_unpublish(&p.volume_id, &p.target));
        if let Some(s) = &p.staging {
            note(self.node_unstage(&p.volume_id, s));
        }
        if p.controller_published {
            note(self.controller_unpublish(&p.volume_id));
        }
        // kubelet removes the directories it made, once nothing is mounted there.
        for d in [Some(&p.target), p.staging.as_ref()].into_iter().flatten() {
            if mounts_at(d) == 0 {
                let _ = std::fs::remove_dir(d);
                let _ = std::fs::remove_file(d);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// ControllerExpandVolume, then NodeExpandVolume when the node must grow the filesystem.
    pub fn expand(
        &self,
        volume_id: &str,
        new_size: u64,
        published: Option<&Published>,
    ) -> Result<u64, CsiError> {
        let mut capacity = new_size;
        let mut node_required = true;
        if self.caps.controller_expand {
            let req = proto::ControllerExpandVolumeRequest {
                volume_id: volume_id.into(),
                capacity_range: Some(proto::CapacityRange {
                    required_bytes: new_size as i64,
                    limit_bytes: 0,
                }),
                secrets: self
                    .spec
                    .secrets
                    .controller_expand
                    .clone()
                    .into_iter()
                    .collect(),
                volume_capability: Some(self.capability()),
            };
            let shown = req.clone();
            let r = self
                .client
                .call(Call::ControllerExpandVolume, req, |ch, r| async move {
                    ControllerClient::new(ch).controller_expand_volume(r).await
                })?;
            (capacity, node_required) = reply::controller_expanded(new_size, &r).map_err(|m| {
                self.client
                    .violation(Call::ControllerExpandVolume, m, &shown, &r)
            })?;
        } else if !self.caps.node_expand {
            return Err(CsiError::Driver(format!(
                "plugin {} has neither the controller's nor the node's EXPAND_VOLUME capability",
                self.caps.name
            )));
        }
        if node_required
            && self.caps.node_expand
            && let Some(p) = published
        {
            let req = proto::NodeExpandVolumeRequest {
                volume_id: volume_id.into(),
                volume_path: p.target.display().to_string(),
                capacity_range: Some(proto::CapacityRange {
                    required_bytes: new_size as i64,
                    limit_bytes: 0,
                }),
                staging_target_path: p
                    .staging
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default(),
                volume_capability: Some(self.capability()),
                secrets: self.spec.secrets.node_expand.clone().into_iter().collect(),
            };
            let shown = req.clone();
            let r = self
                .client
                .call(Call::NodeExpandVolume, req, |ch, r| async move {
                    NodeClient::new(ch).node_expand_volume(r).await
                })?;
            reply::node_expanded(new_size, &r)
                .map_err(|m| self.client.violation(Call::NodeExpandVolume, m, &shown, &r))?;
        }
        Ok(capacity)
    }

    pub fn snapshot_request(&self, source: &str, name: &str) -> proto::CreateSnapshotRequest {
        proto::CreateSnapshotRequest {
            source_volume_id: source.into(),
            name: name.into(),
            secrets: self.spec.secrets.snapshotter.clone().into_iter().collect(),
            parameters: HashMap::new(),
        }
    }

    /// CreateSnapshot, repeated (it is idempotent) until ready_to_use, as the snapshotter does.
    pub fn create_snapshot(&self, source: &str, name: &str) -> Result<String, CsiError> {
        let deadline = Instant::now() + self.client.timeout();
        let mut first_id: Option<String> = None;
        loop {
            let req = self.snapshot_request(source, name);
            let shown = req.clone();
            let r = self
                .client
                .call(Call::CreateSnapshot, req, |ch, r| async move {
                    ControllerClient::new(ch).create_snapshot(r).await
                })?;
            let s = reply::created_snapshot(source, first_id.as_deref(), &r)
                .map_err(|m| self.client.violation(Call::CreateSnapshot, m, &shown, &r))?;
            if s.ready {
                return Ok(s.id);
            }
            first_id = Some(s.id);
            if Instant::now() > deadline {
                return Err(CsiError::Timeout {
                    call: Call::CreateSnapshot,
                    limit: self.client.timeout(),
                    request: shown.shown_string(self.client),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), CsiError> {
        let req = proto::DeleteSnapshotRequest {
            snapshot_id: id.into(),
            secrets: self.spec.secrets.snapshotter.clone().into_iter().collect(),
        };
        self.client
            .call(Call::DeleteSnapshot, req, |ch, r| async move {
                ControllerClient::new(ch).delete_snapshot(r).await
            })
            .map(|_| ())
    }

    pub fn stats(
        &self,
        volume_id: &str,
        path: &Path,
    ) -> Result<proto::NodeGetVolumeStatsResponse, CsiError> {
        let req = proto::NodeGetVolumeStatsRequest {
            volume_id: volume_id.into(),
            volume_path: path.display().to_string(),
            staging_target_path: String::new(),
        };
        self.client
            .call(Call::NodeGetVolumeStats, req, |ch, r| async move {
                NodeClient::new(ch).node_get_volume_stats(r).await
            })
    }
}

trait ShownString {
    fn shown_string(&self, client: &CsiClient) -> String;
}
impl<T: super::client::Shown> ShownString for T {
    fn shown_string(&self, client: &CsiClient) -> String {
        self.shown(client.masker())
    }
}

/// How many mounts the kernel shows exactly at `p` (0 when none or unreadable).
pub fn mounts_at(p: &Path) -> usize {
    sys::mount_points()
        .iter()
        .filter(|m| m.as_path() == p)
        .count()
}

/// kubelet retries a failed unmount (NodeUnpublishVolume, NodeUnstageVolume): the usual cause
/// is "target is busy" for a moment after the pod's processes end. Retried only for codes that
/// say so (Internal, Aborted).
fn retry_busy(mut f: impl FnMut() -> Result<(), CsiError>) -> Result<(), CsiError> {
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut pause = Duration::from_millis(100);
    loop {
        match f() {
            Err(e)
                if matches!(code_of(&e), Some("Internal" | "Aborted"))
                    && Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}
