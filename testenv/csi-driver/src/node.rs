//! CSI Node service: staging (bind mount of a directory volume, or a loop device over an image,
//! with a filesystem mounted for mount access), publishing (bind mounts, or with `--data-path
//! fuse-*` a FUSE passthrough of the staging path; read-only when asked; a block volume's loop
//! device bound onto a file), stats and expansion.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::checkpoint;
use crate::config::DataPath;
use crate::csi::node_server::Node;
use crate::csi::node_service_capability::{self, rpc};
use crate::csi::{self, NodeServiceCapability, VolumeUsage, volume_usage};
use crate::driver::{
    Driver, access_of, io_internal, is_reader_only, require, same_access_type, supports, topology,
};
use crate::fault_actions;
use crate::faults::Fault;
use crate::fuse_path;
use crate::log;
use crate::loopdev;
use crate::mounts;
use crate::state::{Access, Publication, Staging, Volume, VolumeKind};

pub struct NodeService(pub Arc<Driver>);

const DEFAULT_FS: &str = "ext4";

/// Whether the first 68 KiB of `device` carry an ext2/3/4, XFS or btrfs superblock.
fn has_filesystem(device: &Path) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 68 * 1024];
    let mut f = fs::File::open(device)?;
    let mut filled = 0;
    while filled < buf.len() {
        let n = f.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let ext = filled > 1081 && buf[1080] == 0x53 && buf[1081] == 0xEF;
    let xfs = filled >= 4 && &buf[..4] == b"XFSB";
    let btrfs = filled >= 0x10040 + 8 && &buf[0x10040..0x10048] == b"_BHRfS_M";
    Ok(ext || xfs || btrfs)
}

/// mkfs.<fs_type> — the one external program, needed only for mount access to image volumes.
fn make_filesystem(device: &Path, fs_type: &str) -> Result<(), Status> {
    let program = format!("mkfs.{fs_type}");
    let mut cmd = Command::new(&program);
    if fs_type.starts_with("ext") {
        cmd.args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]);
    }
    let out = cmd.arg(device).output().map_err(|e| {
        Status::failed_precondition(format!(
            "{program} cannot be run ({e}); mount access to an image volume needs it"
        ))
    })?;
    if !out.status.success() {
        return Err(Status::internal(format!(
            "{program} {}: {}",
            device.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Grow the filesystem on `device` (mounted at `mount_point`) to the device's size.
fn grow_filesystem(device: &Path, mount_point: &Path, fs_type: &str) -> Result<(), Status> {
    let (program, arg) = match fs_type {
        "xfs" => ("xfs_growfs", mount_point),
        "" | "ext2" | "ext3" | "ext4" => ("resize2fs", device),
        other => {
            return Err(Status::failed_precondition(format!(
                "cannot grow a {other} filesystem"
            )));
        }
    };
    let out = Command::new(program)
        .arg(arg)
        .output()
        .map_err(|e| Status::failed_precondition(format!("{program} cannot be run ({e})")))?;
    if !out.status.success() {
        return Err(Status::internal(format!(
            "{program} {}: {}",
            arg.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl NodeService {
    /// An unknown volume id: NOT_FOUND, or OK under the `ok-for-unknown` fault (then `Ok(())`).
    fn unknown(&self, call: &str, volume_id: &str) -> Result<(), Status> {
        if self.0.fault(Fault::OkForUnknown) {
            self.0.log_fault(
                Fault::OkForUnknown,
                format_args!("{call} of unknown volume {volume_id}: OK"),
            );
            return Ok(());
        }
        Err(Status::not_found(format!(
            "volume {volume_id} does not exist"
        )))
    }

    /// The device or directory a staged volume is published from.
    /// The `stack-mounts` fault: `path` (staged or published already) bound onto itself, one
    /// more mount on top of what is there.
    fn stack(&self, id: &str, call: &str, path: &Path, readonly: bool) -> Result<(), Status> {
        mounts::bind(path, path, readonly)
            .map_err(|e| io_internal(format_args!("bind {} on itself", path.display()), e))?;
        self.0.log_fault(
            Fault::StackMounts,
            format_args!(
                "second {call} of {id} at {}: mounted it again on top",
                path.display()
            ),
        );
        Ok(())
    }

    fn publish_source(&self, v: &Volume, staging: &Staging) -> Result<PathBuf, Status> {
        match (&staging.access, v.kind) {
            (Access::Block, _) => staging.loop_device.clone().ok_or_else(|| {
                Status::failed_precondition(format!(
                    "volume {} is staged without a loop device; unstage and stage it again",
                    v.id
                ))
            }),
            (Access::Mount { .. }, _) => Ok(staging.staging_path.clone()),
        }
    }

    /// Undo a staging: unmount, detach, and (fault) damage the tail of the data.
    fn unstage(&self, v: &Volume, staging: &Staging) -> Result<(), Status> {
        if matches!(staging.access, Access::Mount { .. }) {
            mounts::unmount_all(&staging.staging_path).map_err(|e| {
                io_internal(
                    format_args!("unmount {}", staging.staging_path.display()),
                    e,
                )
            })?;
        }
        if let Some(dev) = &staging.loop_device {
            let _ = fs::File::open(dev).and_then(|f| f.sync_all());
            loopdev::detach(dev).map_err(|e| Status::internal(e.to_string()))?;
        }
        if self.0.fault(Fault::LoseTailAtUnstage) {
            let data = self.0.layout.volume_data(&v.id, v.kind);
            let damage = match v.kind {
                VolumeKind::Dir => match fault_actions::newest_file(&data) {
                    Some(file) => fault_actions::zero_tail(&file).map(|r| Some((file, r))),
                    None => Ok(None),
                },
                VolumeKind::Image => fault_actions::zero_last_written_chunk(&data)
                    .map(|r| r.map(|r| (data.clone(), r))),
            };
            match damage {
                Ok(Some((file, (start, end)))) => self.0.log_fault(
                    Fault::LoseTailAtUnstage,
                    format_args!(
                        "volume {} file {} zeroed bytes {start}..{end}",
                        v.id,
                        file.display()
                    ),
                ),
                Ok(None) => self.0.log_fault(
                    Fault::LoseTailAtUnstage,
                    format_args!("volume {} has no data to lose", v.id),
                ),
                Err(e) => self.0.log_fault(
                    Fault::LoseTailAtUnstage,
                    format_args!("volume {}: {e}", v.id),
                ),
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        self.0.hang_if_due("NodeStageVolume").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("staging_target_path", &req.staging_target_path)?;
        let (access, _) = access_of(req.volume_capability.as_ref(), "volume_capability")?;
        let staging_path = PathBuf::from(&req.staging_target_path);
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id).cloned() else {
            return self
                .unknown("NodeStageVolume", &req.volume_id)
                .map(|()| Response::new(csi::NodeStageVolumeResponse {}));
        };
        if !supports(v.kind, &access) {
            return Err(Status::failed_precondition(format!(
                "volume {} ({:?}) cannot be staged for {access:?}",
                v.id, v.kind
            )));
        }
        if self.0.config.enable_attach && !v.attached.contains_key(&self.0.config.node_id) {
            return Err(Status::failed_precondition(format!(
                "volume {} is not attached to node {} (ControllerPublishVolume first)",
                v.id, self.0.config.node_id
            )));
        }
        if let Some(existing) = &v.staging {
            if existing.staging_path == staging_path {
                if same_access_type(&existing.access, &access) {
                    if self.0.fault(Fault::StackMounts) {
                        self.stack(&v.id, "NodeStageVolume", &staging_path, false)?;
                    }
                    return Ok(Response::new(csi::NodeStageVolumeResponse {}));
                }
                return Err(Status::already_exists(format!(
                    "volume {} is staged at {} for {:?}",
                    v.id,
                    staging_path.display(),
                    existing.access
                )));
            }
            return Err(Status::failed_precondition(format!(
                "volume {} is already staged at {}",
                v.id,
                existing.staging_path.display()
            )));
        }
        fs::create_dir_all(&staging_path).map_err(|e| io_internal(staging_path.display(), e))?;
        let data = self.0.layout.volume_data(&v.id, v.kind);
        let loop_device = match v.kind {
            VolumeKind::Image => {
                Some(loopdev::attach(&data).map_err(|e| Status::internal(e.to_string()))?)
            }
            VolumeKind::Dir => None,
        };
        let mounted = match (&access, v.kind, &loop_device) {
            (Access::Block, _, _) => Ok(()),
            (Access::Mount { .. }, VolumeKind::Dir, _) => mounts::bind(&data, &staging_path, false)
                .map_err(|e| {
                    io_internal(
                        format_args!("bind {} on {}", data.display(), staging_path.display()),
                        e,
                    )
                }),
            (
                Access::Mount {
                    fs_type,
                    mount_flags,
                },
                VolumeKind::Image,
                Some(dev),
            ) => {
                let fs_type = if fs_type.is_empty() {
                    DEFAULT_FS
                } else {
                    fs_type.as_str()
                };
                (|| {
                    if !has_filesystem(dev).map_err(|e| io_internal(dev.display(), e))? {
                        make_filesystem(dev, fs_type)?;
                    }
                    mounts::mount_fs(dev, &staging_path, fs_type, mount_flags, false).map_err(|e| {
                        io_internal(
                            format_args!(
                                "mount {} ({fs_type}) on {}",
                                dev.display(),
                                staging_path.display()
                            ),
                            e,
                        )
                    })
                })()
            }
            (Access::Mount { .. }, VolumeKind::Image, None) => {
                unreachable!("image volumes get a loop device")
            }
        };
        if let Err(e) = mounted {
            if let Some(dev) = &loop_device {
                let _ = loopdev::detach(dev);
            }
            return Err(e);
        }
        log!(
            "NodeStageVolume {} at {}{}",
            v.id,
            staging_path.display(),
            loop_device
                .as_ref()
                .map(|d| format!(" (loop device {})", d.display()))
                .unwrap_or_default()
        );
        let vol = state.volumes.get_mut(&v.id).expect("looked up above");
        vol.staging = Some(Staging {
            staging_path,
            access,
            loop_device,
        });
        self.0.save(&state)?;
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        self.0.hang_if_due("NodeUnstageVolume").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("staging_target_path", &req.staging_target_path)?;
        let staging_path = PathBuf::from(&req.staging_target_path);
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id).cloned() else {
            return self
                .unknown("NodeUnstageVolume", &req.volume_id)
                .map(|()| Response::new(csi::NodeUnstageVolumeResponse {}));
        };
        let Some(staging) = v.staging.clone().filter(|s| s.staging_path == staging_path) else {
            return Ok(Response::new(csi::NodeUnstageVolumeResponse {}));
        };
        if let Some(target) = v.publications.keys().next() {
            return Err(Status::failed_precondition(format!(
                "volume {} is still published at {}",
                v.id,
                target.display()
            )));
        }
        self.unstage(&v, &staging)?;
        log!("NodeUnstageVolume {} from {}", v.id, staging_path.display());
        state
            .volumes
            .get_mut(&v.id)
            .expect("looked up above")
            .staging = None;
        self.0.save(&state)?;
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        self.0.hang_if_due("NodePublishVolume").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("target_path", &req.target_path)?;
        let (access, mode) = access_of(req.volume_capability.as_ref(), "volume_capability")?;
        if req.staging_target_path.is_empty() {
            return Err(Status::failed_precondition(
                "staging_target_path is required (the plugin has STAGE_UNSTAGE_VOLUME)",
            ));
        }
        let target = PathBuf::from(&req.target_path);
        let readonly = req.readonly || is_reader_only(mode);
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id).cloned() else {
            return self
                .unknown("NodePublishVolume", &req.volume_id)
                .map(|()| Response::new(csi::NodePublishVolumeResponse {}));
        };
        if !supports(v.kind, &access) {
            return Err(Status::failed_precondition(format!(
                "volume {} ({:?}) cannot be published for {access:?}",
                v.id, v.kind
            )));
        }
        let staging = v
            .staging
            .clone()
            .filter(|s| s.staging_path == Path::new(&req.staging_target_path))
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "volume {} is not staged at {}",
                    v.id, req.staging_target_path
                ))
            })?;
        if !same_access_type(&staging.access, &access) {
            return Err(Status::failed_precondition(format!(
                "volume {} is staged for {:?}, not {access:?}",
                v.id, staging.access
            )));
        }
        if let Some(existing) = v.publications.get(&target) {
            if self.0.fault(Fault::NotIdempotent) {
                self.0.log_fault(
                    Fault::NotIdempotent,
                    format_args!(
                        "second NodePublishVolume of {} at {}: failing",
                        v.id,
                        target.display()
                    ),
                );
                return Err(Status::internal(format!(
                    "target {} is busy",
                    target.display()
                )));
            }
            if existing.readonly == readonly && same_access_type(&existing.access, &access) {
                if self.0.fault(Fault::StackMounts) {
                    self.stack(&v.id, "NodePublishVolume", &target, readonly)?;
                }
                return Ok(Response::new(csi::NodePublishVolumeResponse {}));
            }
            return Err(Status::already_exists(format!(
                "volume {} is published at {} with readonly={} for {:?}",
                v.id,
                target.display(),
                existing.readonly,
                existing.access
            )));
        }
        let source = self.publish_source(&v, &staging)?;
        let created_target = !target.exists();
        let fault_no_mount = self.0.fault(Fault::PublishWithoutMount);
        // Block volumes and the `publish-without-mount` fault keep the bind path.
        let data_path = match (&access, fault_no_mount) {
            (Access::Mount { .. }, false) => self.0.config.data_path,
            _ => DataPath::Bind,
        };
        let mut fuse_daemon_pid_file = None;
        let made: std::io::Result<()> = match (&access, fault_no_mount) {
            (Access::Block, false) => {
                if target.is_dir() {
                    return Err(Status::failed_precondition(format!(
                        "target {} of a block volume is a directory",
                        target.display()
                    )));
                }
                if created_target {
                    fs::File::create(&target).map_err(|e| io_internal(target.display(), e))?;
                }
                mounts::bind(&source, &target, readonly).map_err(Into::into)
            }
            (_, true) => {
                fs::create_dir_all(&target).map_err(|e| io_internal(target.display(), e))?;
                self.0.log_fault(
                    Fault::PublishWithoutMount,
                    format_args!(
                        "NodePublishVolume {} at {}: mounted nothing",
                        v.id,
                        target.display()
                    ),
                );
                Ok(())
            }
            (Access::Mount { .. }, false) => {
                fs::create_dir_all(&target).map_err(|e| io_internal(target.display(), e))?;
                match data_path {
                    DataPath::Bind => mounts::bind(&source, &target, readonly).map_err(Into::into),
                    DataPath::FuseInside => fuse_path::serve_inside(&source, &target, readonly),
                    DataPath::FuseOutside => fuse_path::spawn_daemon(
                        &self.0.layout,
                        &self.0.fuse_daemons,
                        &v.id,
                        &source,
                        &target,
                        readonly,
                    )
                    .map(|pid_file| fuse_daemon_pid_file = Some(pid_file)),
                }
            }
        };
        if let Err(e) = made {
            if created_target {
                let _ = fs::remove_dir(&target).or_else(|_| fs::remove_file(&target));
            }
            let how = match data_path {
                DataPath::Bind => "bind".to_string(),
                fuse => format!("{fuse} FUSE mount of"),
            };
            return Err(io_internal(
                format_args!("{how} {} on {}", source.display(), target.display()),
                e,
            ));
        }
        log!(
            "NodePublishVolume {} at {} (readonly={readonly}, data path {data_path})",
            v.id,
            target.display()
        );
        if self.0.config.lose_acked_writes_on_restart
            && matches!(access, Access::Mount { .. })
            && !fault_no_mount
        {
            let fault = |what: std::fmt::Arguments| log!("FAULT {}: {what}", checkpoint::NAME);
            match checkpoint::record(&self.0.layout, &v.id, &staging.staging_path) {
                Ok(Some(n)) => fault(format_args!(
                    "volume {} checkpointed at NodePublishVolume ({n} files); a restart rewinds it there",
                    v.id
                )),
                Ok(None) => {}
                Err(e) => fault(format_args!("volume {}: recording a checkpoint: {e}", v.id)),
            }
        }
        let publication = Publication {
            target_path: target.clone(),
            access,
            readonly,
            created_target,
            mounted: !fault_no_mount,
            data_path,
            fuse_daemon_pid_file,
        };
        state
            .volumes
            .get_mut(&v.id)
            .expect("looked up above")
            .publications
            .insert(target, publication);
        self.0.save(&state)?;
        self.0.mark_published();
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        self.0.hang_if_due("NodeUnpublishVolume").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("target_path", &req.target_path)?;
        let target = PathBuf::from(&req.target_path);
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id).cloned() else {
            return self
                .unknown("NodeUnpublishVolume", &req.volume_id)
                .map(|()| Response::new(csi::NodeUnpublishVolumeResponse {}));
        };
        let Some(publication) = v.publications.get(&target) else {
            return Ok(Response::new(csi::NodeUnpublishVolumeResponse {}));
        };
        match publication.data_path {
            DataPath::Bind => mounts::unmount_all(&target),
            DataPath::FuseInside | DataPath::FuseOutside => fuse_path::unmount(&target),
        }
        .map_err(|e| io_internal(format_args!("unmount {}", target.display()), e))?;
        if let Some(pid_file) = &publication.fuse_daemon_pid_file {
            fuse_path::stop_daemon(&self.0.fuse_daemons, pid_file, &target).map_err(|e| {
                io_internal(
                    format_args!("stopping the FUSE daemon of {}", target.display()),
                    e,
                )
            })?;
        }
        if publication.created_target {
            // Under `publish-without-mount` the target is a plain directory the workload wrote
            // into; it goes with its contents (the data never reached the volume).
            let removed = if !publication.mounted {
                fs::remove_dir_all(&target)
            } else if target.is_dir() {
                fs::remove_dir(&target)
            } else {
                fs::remove_file(&target)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io_internal(
                        format_args!("removing {}", target.display()),
                        e,
                    ));
                }
            }
        }
        log!("NodeUnpublishVolume {} from {}", v.id, target.display());
        let vol = state.volumes.get_mut(&v.id).expect("looked up above");
        vol.publications.remove(&target);
        if vol.publications.is_empty()
            && let Err(e) = checkpoint::discard(&self.0.layout, &v.id)
        {
            log!("volume {}: removing its checkpoint: {e}", v.id);
        }
        self.0.save(&state)?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        self.0.hang_if_due("NodeGetVolumeStats").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("volume_path", &req.volume_path)?;
        let path = PathBuf::from(&req.volume_path);
        let state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id) else {
            return self
                .unknown("NodeGetVolumeStats", &req.volume_id)
                .map(|()| Response::new(csi::NodeGetVolumeStatsResponse::default()));
        };
        let known_path = v.publications.contains_key(&path)
            || v.staging.as_ref().is_some_and(|s| s.staging_path == path);
        if !known_path || !path.exists() {
            return Err(Status::not_found(format!(
                "volume {} is not at {}",
                v.id,
                path.display()
            )));
        }
        let is_block = v
            .publications
            .get(&path)
            .is_some_and(|p| p.access == Access::Block)
            || v.staging
                .as_ref()
                .is_some_and(|s| s.staging_path == path && s.access == Access::Block);
        let usage = if is_block {
            let size = if loopdev::is_block_device(&path) {
                loopdev::device_size(&path).map_err(|e| Status::internal(e.to_string()))? as i64
            } else {
                v.capacity_bytes
            };
            vec![VolumeUsage {
                available: 0,
                total: size,
                used: 0,
                unit: volume_usage::Unit::Bytes as i32,
            }]
        } else {
            let st = nix::sys::statvfs::statvfs(&path)
                .map_err(|e| io_internal(format_args!("statvfs {}", path.display()), e))?;
            let f = st.fragment_size() as i64;
            vec![
                VolumeUsage {
                    available: st.blocks_available() as i64 * f,
                    total: st.blocks() as i64 * f,
                    used: (st.blocks() as i64 - st.blocks_free() as i64) * f,
                    unit: volume_usage::Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: st.files_available() as i64,
                    total: st.files() as i64,
                    used: st.files() as i64 - st.files_free() as i64,
                    unit: volume_usage::Unit::Inodes as i32,
                },
            ]
        };
        Ok(Response::new(csi::NodeGetVolumeStatsResponse {
            usage,
            volume_condition: None,
        }))
    }

    async fn node_expand_volume(
        &self,
        request: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        self.0.hang_if_due("NodeExpandVolume").await;
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("volume_path", &req.volume_path)?;
        let path = PathBuf::from(&req.volume_path);
        let state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id) else {
            return self
                .unknown("NodeExpandVolume", &req.volume_id)
                .map(|()| Response::new(csi::NodeExpandVolumeResponse::default()));
        };
        // kubelet grows a raw block volume while mapping it for a new pod, before that pod's
        // publish path exists: the staged loop device is what grows, so only a mount volume's
        // path must exist (found by pvcheck's `expand` on a Block PVC).
        let staged_block = v
            .staging
            .as_ref()
            .is_some_and(|s| s.loop_device.is_some() && matches!(s.access, Access::Block));
        if !path.exists() && !staged_block {
            return Err(Status::not_found(format!(
                "volume path {} does not exist",
                path.display()
            )));
        }
        if let Some(staging) = &v.staging
            && let Some(dev) = &staging.loop_device
        {
            loopdev::refresh_capacity(dev).map_err(|e| Status::internal(e.to_string()))?;
            if let Access::Mount { fs_type, .. } = &staging.access {
                grow_filesystem(dev, &staging.staging_path, fs_type)?;
            }
        }
        log!(
            "NodeExpandVolume {} at {}: {} bytes",
            v.id,
            path.display(),
            v.capacity_bytes
        );
        Ok(Response::new(csi::NodeExpandVolumeResponse {
            capacity_bytes: v.capacity_bytes,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        self.0.hang_if_due("NodeGetCapabilities").await;
        let capabilities = [
            rpc::Type::StageUnstageVolume,
            rpc::Type::ExpandVolume,
            rpc::Type::GetVolumeStats,
        ]
        .into_iter()
        .map(|t| NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(
                node_service_capability::Rpc { r#type: t as i32 },
            )),
        })
        .collect();
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        self.0.hang_if_due("NodeGetInfo").await;
        let c = &self.0.config;
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: c.node_id.clone(),
            max_volumes_per_node: c.max_volumes_per_node,
            accessible_topology: Some(topology(&c.topology)),
        }))
    }
}
