//! CSI Controller service: volumes (directories or sparse images under the statedir),
//! attach records, snapshots (full copies), clones, expansion.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::Backing;
use crate::copy;
use crate::csi::controller_server::Controller;
use crate::csi::controller_service_capability::{self, rpc};
use crate::csi::volume_content_source::{SnapshotSource, Type as SourceType, VolumeSource};
use crate::csi::{self, ControllerServiceCapability};
use crate::driver::{
    Driver, access_of, io_internal, require, supports, topology, topology_matches,
};
use crate::faults::Fault;
use crate::ids::random_id;
use crate::log;
use crate::state::{Access, Snapshot, Source, State, Volume, VolumeKind};

pub struct ControllerService(pub Arc<Driver>);

impl ControllerService {
    fn csi_volume(&self, v: &Volume) -> csi::Volume {
        csi::Volume {
            capacity_bytes: v.capacity_bytes,
            volume_id: v.id.clone(),
            volume_context: HashMap::new(),
            content_source: v.source.as_ref().map(|s| csi::VolumeContentSource {
                r#type: Some(match s {
                    Source::Snapshot(id) => SourceType::Snapshot(SnapshotSource {
                        snapshot_id: id.clone(),
                    }),
                    Source::Volume(id) => SourceType::Volume(VolumeSource {
                        volume_id: id.clone(),
                    }),
                }),
            }),
            accessible_topology: vec![topology(&self.0.config.topology)],
        }
    }

    /// Make the new volume's data: empty, or a copy of the source's.
    fn create_data(&self, state: &State, v: &Volume) -> Result<(), Status> {
        let layout = &self.0.layout;
        let dir = layout.volume_dir(&v.id);
        fs::create_dir_all(&dir).map_err(|e| io_internal(dir.display(), e))?;
        let data = layout.volume_data(&v.id, v.kind);
        let source_data = match &v.source {
            None => None,
            Some(Source::Snapshot(id)) => Some(layout.snapshot_data(id, v.kind)),
            Some(Source::Volume(id)) => {
                flush_loop_device(state, id);
                Some(layout.volume_data(id, v.kind))
            }
        };
        let made = match v.kind {
            VolumeKind::Dir => fs::create_dir(&data).and_then(|()| {
                // World-writable like a fresh hostPath volume, so non-root pods can use it.
                fs::set_permissions(&data, fs::Permissions::from_mode(0o777))?;
                match &source_data {
                    Some(src) => copy::tree(src, &data),
                    None => Ok(()),
                }
            }),
            VolumeKind::Image => {
                let copied = match &source_data {
                    Some(src) => copy::sparse_file(src, &data).map(|_| ()),
                    None => fs::File::create(&data).map(|_| ()),
                };
                copied.and_then(|()| {
                    let f = fs::OpenOptions::new().write(true).open(&data)?;
                    if f.metadata()?.len() < v.capacity_bytes as u64 {
                        f.set_len(v.capacity_bytes as u64)?;
                    }
                    Ok(())
                })
            }
        };
        made.map_err(|e| {
            let _ = fs::remove_dir_all(&dir);
            io_internal(format_args!("creating volume data {}", data.display()), e)
        })
    }

    fn csi_snapshot(s: &Snapshot) -> csi::Snapshot {
        csi::Snapshot {
            size_bytes: s.size_bytes,
            snapshot_id: s.id.clone(),
            source_volume_id: s.source_volume_id.clone(),
            creation_time: Some(prost_types::Timestamp {
                seconds: s.created_seconds,
                nanos: s.created_nanos,
            }),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        }
    }

    fn capabilities(&self) -> Vec<rpc::Type> {
        let mut caps = vec![
            rpc::Type::CreateDeleteVolume,
            rpc::Type::ListVolumes,
            rpc::Type::GetCapacity,
            rpc::Type::CreateDeleteSnapshot,
            rpc::Type::ListSnapshots,
            rpc::Type::CloneVolume,
            rpc::Type::ExpandVolume,
        ];
        if self.0.config.enable_attach {
            caps.push(rpc::Type::PublishUnpublishVolume);
        }
        caps
    }
}

/// Data written through a loop device may sit in the block device's page cache; flush it to the
/// image before copying the image.
fn flush_loop_device(state: &State, volume_id: &str) {
    if let Some(dev) = state
        .volumes
        .get(volume_id)
        .and_then(|v| v.staging.as_ref())
        .and_then(|s| s.loop_device.as_ref())
        && let Ok(f) = fs::File::open(dev)
    {
        let _ = f.sync_all();
    }
}

/// Page through `items` with an index as the token.
fn page<T: Clone>(
    items: &[T],
    starting_token: &str,
    max_entries: i32,
) -> Result<(Vec<T>, String), Status> {
    if max_entries < 0 {
        return Err(Status::invalid_argument("max_entries must not be negative"));
    }
    let start = if starting_token.is_empty() {
        0
    } else {
        starting_token
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= items.len())
            .ok_or_else(|| {
                Status::aborted(format!("starting_token {starting_token:?} is not valid"))
            })?
    };
    let end = if max_entries == 0 {
        items.len()
    } else {
        (start + max_entries as usize).min(items.len())
    };
    let next = if end < items.len() {
        end.to_string()
    } else {
        String::new()
    };
    Ok((items[start..end].to_vec(), next))
}

fn now() -> (i64, i32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i32)
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        require("name", &req.name)?;
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        let mut wants_block = false;
        for (i, cap) in req.volume_capabilities.iter().enumerate() {
            let (access, _) = access_of(Some(cap), &format!("volume_capabilities[{i}]"))?;
            wants_block |= access == Access::Block;
        }
        let kind = if wants_block || self.0.config.backing == Backing::Image {
            VolumeKind::Image
        } else {
            VolumeKind::Dir
        };
        let (required, limit) = req
            .capacity_range
            .map(|r| (r.required_bytes, r.limit_bytes))
            .unwrap_or((0, 0));
        if required < 0 || limit < 0 {
            return Err(Status::invalid_argument(
                "capacity_range: bytes must not be negative",
            ));
        }
        if limit > 0 && required > limit {
            return Err(Status::invalid_argument(format!(
                "capacity_range: required_bytes {required} > limit_bytes {limit}"
            )));
        }
        let (key, value) = &self.0.config.topology;
        if let Some(ar) = &req.accessibility_requirements
            && !ar.requisite.is_empty()
            && !ar
                .requisite
                .iter()
                .any(|t| topology_matches(t, &self.0.config.topology))
        {
            return Err(Status::resource_exhausted(format!(
                "no requisite topology is {key}={value:?}"
            )));
        }
        let source = match req.volume_content_source.and_then(|s| s.r#type) {
            None => None,
            Some(SourceType::Snapshot(s)) => {
                require("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?;
                Some(Source::Snapshot(s.snapshot_id))
            }
            Some(SourceType::Volume(s)) => {
                require("volume_content_source.volume.volume_id", &s.volume_id)?;
                Some(Source::Volume(s.volume_id))
            }
        };
        let mut state = self.0.state.lock().await;
        if let Some(existing) = state.volumes.values().find(|v| v.name == req.name) {
            if self.0.fault(Fault::NotIdempotent) {
                self.0.log_fault(
                    Fault::NotIdempotent,
                    format_args!(
                        "CreateVolume {:?} exists as {}; making another",
                        req.name, existing.id
                    ),
                );
            } else {
                let fits = existing.capacity_bytes >= required
                    && (limit == 0 || existing.capacity_bytes <= limit);
                let same_source = existing.source == source;
                let kind_ok = !wants_block || existing.kind == VolumeKind::Image;
                if fits && same_source && kind_ok {
                    log!("CreateVolume {:?}: exists as {}", req.name, existing.id);
                    return Ok(Response::new(csi::CreateVolumeResponse {
                        volume: Some(self.csi_volume(existing)),
                    }));
                }
                return Err(Status::already_exists(format!(
                    "volume {:?} exists as {} with capacity {} and source {:?}, incompatible with this request",
                    req.name, existing.id, existing.capacity_bytes, existing.source
                )));
            }
        }
        // The source's size is the floor of the new volume's.
        let source_size = match &source {
            None => 0,
            Some(Source::Snapshot(id)) => {
                let s = state
                    .snapshots
                    .get(id)
                    .ok_or_else(|| Status::not_found(format!("snapshot {id} does not exist")))?;
                if s.kind != kind {
                    return Err(Status::invalid_argument(format!(
                        "snapshot {id} holds a {:?} volume, this request needs {kind:?}",
                        s.kind
                    )));
                }
                s.size_bytes
            }
            Some(Source::Volume(id)) => {
                let v = state
                    .volumes
                    .get(id)
                    .ok_or_else(|| Status::not_found(format!("volume {id} does not exist")))?;
                if v.kind != kind {
                    return Err(Status::invalid_argument(format!(
                        "volume {id} is a {:?} volume, this request needs {kind:?}",
                        v.kind
                    )));
                }
                v.capacity_bytes
            }
        };
        let capacity = if required > 0 {
            required
        } else if limit > 0 {
            self.0
                .config
                .default_volume_size
                .min(limit)
                .max(source_size.min(limit))
        } else {
            self.0.config.default_volume_size.max(source_size)
        };
        if kind == VolumeKind::Image && capacity < source_size {
            return Err(Status::out_of_range(format!(
                "capacity {capacity} is smaller than the source's {source_size} bytes"
            )));
        }
        let volume = Volume {
            id: random_id(),
            name: req.name.clone(),
            capacity_bytes: capacity,
            kind,
            source,
            parameters: req.parameters.into_iter().collect::<BTreeMap<_, _>>(),
            attached: BTreeMap::new(),
            staging: None,
            publications: BTreeMap::new(),
        };
        self.create_data(&state, &volume)?;
        log!(
            "CreateVolume {:?}: created {} ({kind:?}, {capacity} bytes, source {:?})",
            volume.name,
            volume.id,
            volume.source
        );
        let reply = self.csi_volume(&volume);
        state.volumes.insert(volume.id.clone(), volume);
        self.0.save(&state)?;
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(reply),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id) else {
            return Ok(Response::new(csi::DeleteVolumeResponse {}));
        };
        if v.staging.is_some() || !v.publications.is_empty() || !v.attached.is_empty() {
            return Err(Status::failed_precondition(format!(
                "volume {} is still in use (attached {:?}, staged {}, published at {:?})",
                v.id,
                v.attached.keys().collect::<Vec<_>>(),
                v.staging.is_some(),
                v.publications.keys().collect::<Vec<_>>()
            )));
        }
        let dir = self.0.layout.volume_dir(&req.volume_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_internal(dir.display(), e)),
        }
        state.volumes.remove(&req.volume_id);
        self.0.save(&state)?;
        log!("DeleteVolume {}: deleted", req.volume_id);
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        if !self.0.config.enable_attach {
            return Err(Status::unimplemented(
                "ControllerPublishVolume needs --enable-attach",
            ));
        }
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        require("node_id", &req.node_id)?;
        let (access, _) = access_of(req.volume_capability.as_ref(), "volume_capability")?;
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get_mut(&req.volume_id) else {
            if self.0.fault(Fault::OkForUnknown) {
                self.0.log_fault(
                    Fault::OkForUnknown,
                    format_args!(
                        "ControllerPublishVolume of unknown volume {}: OK",
                        req.volume_id
                    ),
                );
                return Ok(Response::new(
                    csi::ControllerPublishVolumeResponse::default(),
                ));
            }
            return Err(Status::not_found(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        };
        // Node-local volumes are published to this node only; with --zone every node of the
        // zone (a node plugin of its own on each) reaches them.
        let zoned = self.0.config.topology.0 == crate::config::ZONE_KEY;
        if !zoned && req.node_id != self.0.config.node_id {
            return Err(Status::not_found(format!(
                "node {} does not exist (this driver serves {})",
                req.node_id, self.0.config.node_id
            )));
        }
        if !supports(v.kind, &access) {
            return Err(Status::invalid_argument(format!(
                "volume {} ({:?}) cannot be used for {access:?}",
                v.id, v.kind
            )));
        }
        if let Some(&ro) = v.attached.get(&req.node_id) {
            if ro != req.readonly {
                return Err(Status::already_exists(format!(
                    "volume {} is attached to {} with readonly={ro}",
                    v.id, req.node_id
                )));
            }
        } else {
            v.attached.insert(req.node_id.clone(), req.readonly);
            self.0.save(&state)?;
        }
        log!(
            "ControllerPublishVolume {} to {}",
            req.volume_id,
            req.node_id
        );
        let context = [("pvcheck.io/attached-to".to_string(), req.node_id.clone())].into();
        Ok(Response::new(csi::ControllerPublishVolumeResponse {
            publish_context: context,
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        if !self.0.config.enable_attach {
            return Err(Status::unimplemented(
                "ControllerUnpublishVolume needs --enable-attach",
            ));
        }
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        let mut state = self.0.state.lock().await;
        if let Some(v) = state.volumes.get_mut(&req.volume_id) {
            let changed = if req.node_id.is_empty() {
                let had = !v.attached.is_empty();
                v.attached.clear();
                had
            } else {
                v.attached.remove(&req.node_id).is_some()
            };
            if changed {
                self.0.save(&state)?;
            }
        }
        log!(
            "ControllerUnpublishVolume {} from {:?}",
            req.volume_id,
            req.node_id
        );
        Ok(Response::new(csi::ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        let mut accesses = Vec::new();
        for (i, cap) in req.volume_capabilities.iter().enumerate() {
            accesses.push(access_of(Some(cap), &format!("volume_capabilities[{i}]"))?.0);
        }
        let state = self.0.state.lock().await;
        let Some(v) = state.volumes.get(&req.volume_id) else {
            if self.0.fault(Fault::OkForUnknown) {
                self.0.log_fault(
                    Fault::OkForUnknown,
                    format_args!(
                        "ValidateVolumeCapabilities of unknown volume {}: OK",
                        req.volume_id
                    ),
                );
                return Ok(Response::new(
                    csi::ValidateVolumeCapabilitiesResponse::default(),
                ));
            }
            return Err(Status::not_found(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        };
        if let Some(bad) = accesses.iter().find(|a| !supports(v.kind, a)) {
            return Ok(Response::new(csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: format!("volume {} ({:?}) cannot be used for {bad:?}", v.id, v.kind),
            }));
        }
        Ok(Response::new(csi::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: HashMap::new(),
            }),
            message: String::new(),
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let state = self.0.state.lock().await;
        let all: Vec<csi::list_volumes_response::Entry> = state
            .volumes
            .values()
            .map(|v| csi::list_volumes_response::Entry {
                volume: Some(self.csi_volume(v)),
                status: None,
            })
            .collect();
        let (entries, next_token) = page(&all, &req.starting_token, req.max_entries)?;
        Ok(Response::new(csi::ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        request: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let req = request.into_inner();
        for (i, cap) in req.volume_capabilities.iter().enumerate() {
            access_of(Some(cap), &format!("volume_capabilities[{i}]"))?;
        }
        if let Some(t) = &req.accessible_topology
            && !topology_matches(t, &self.0.config.topology)
        {
            return Ok(Response::new(csi::GetCapacityResponse::default()));
        }
        let st = nix::sys::statvfs::statvfs(&self.0.layout.root)
            .map_err(|e| io_internal("statvfs", e))?;
        let available = (st.blocks_available() as u128 * st.fragment_size() as u128)
            .min(i64::MAX as u128) as i64;
        Ok(Response::new(csi::GetCapacityResponse {
            available_capacity: available,
            maximum_volume_size: Some(available),
            minimum_volume_size: None,
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = self
            .capabilities()
            .into_iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc { r#type: t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let req = request.into_inner();
        require("name", &req.name)?;
        require("source_volume_id", &req.source_volume_id)?;
        let mut state = self.0.state.lock().await;
        if let Some(existing) = state.snapshots.values().find(|s| s.name == req.name) {
            if existing.source_volume_id == req.source_volume_id {
                return Ok(Response::new(csi::CreateSnapshotResponse {
                    snapshot: Some(Self::csi_snapshot(existing)),
                }));
            }
            return Err(Status::already_exists(format!(
                "snapshot {:?} exists as {} of volume {}",
                req.name, existing.id, existing.source_volume_id
            )));
        }
        let v = state.volumes.get(&req.source_volume_id).ok_or_else(|| {
            Status::not_found(format!("volume {} does not exist", req.source_volume_id))
        })?;
        let (kind, capacity) = (v.kind, v.capacity_bytes);
        flush_loop_device(&state, &req.source_volume_id);
        let id = random_id();
        let layout = &self.0.layout;
        let dir = layout.snapshot_dir(&id);
        let src = layout.volume_data(&req.source_volume_id, kind);
        let dst = layout.snapshot_data(&id, kind);
        let made = fs::create_dir_all(&dir).and_then(|()| match kind {
            VolumeKind::Dir => fs::create_dir(&dst)
                .and_then(|()| copy::tree(&src, &dst))
                .map(|()| copy::tree_size(&dst)),
            VolumeKind::Image => copy::sparse_file(&src, &dst),
        });
        let size = match made {
            Ok(size) => size,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(io_internal(
                    format_args!("copying {} to {}", src.display(), dst.display()),
                    e,
                ));
            }
        };
        let (created_seconds, created_nanos) = now();
        let snapshot = Snapshot {
            id: id.clone(),
            name: req.name,
            source_volume_id: req.source_volume_id,
            size_bytes: if kind == VolumeKind::Image {
                capacity
            } else {
                size as i64
            },
            kind,
            created_seconds,
            created_nanos,
        };
        log!(
            "CreateSnapshot {:?}: {} of volume {}",
            snapshot.name,
            id,
            snapshot.source_volume_id
        );
        let reply = Self::csi_snapshot(&snapshot);
        state.snapshots.insert(id, snapshot);
        self.0.save(&state)?;
        Ok(Response::new(csi::CreateSnapshotResponse {
            snapshot: Some(reply),
        }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let req = request.into_inner();
        require("snapshot_id", &req.snapshot_id)?;
        let mut state = self.0.state.lock().await;
        if state.snapshots.contains_key(&req.snapshot_id) {
            let dir = self.0.layout.snapshot_dir(&req.snapshot_id);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_internal(dir.display(), e)),
            }
            state.snapshots.remove(&req.snapshot_id);
            self.0.save(&state)?;
            log!("DeleteSnapshot {}: deleted", req.snapshot_id);
        }
        Ok(Response::new(csi::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let req = request.into_inner();
        let state = self.0.state.lock().await;
        let all: Vec<csi::list_snapshots_response::Entry> = state
            .snapshots
            .values()
            .filter(|s| req.snapshot_id.is_empty() || s.id == req.snapshot_id)
            .filter(|s| {
                req.source_volume_id.is_empty() || s.source_volume_id == req.source_volume_id
            })
            .map(|s| csi::list_snapshots_response::Entry {
                snapshot: Some(Self::csi_snapshot(s)),
            })
            .collect();
        let (entries, next_token) = page(&all, &req.starting_token, req.max_entries)?;
        Ok(Response::new(csi::ListSnapshotsResponse {
            entries,
            next_token,
        }))
    }

    async fn get_snapshot(
        &self,
        request: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        let req = request.into_inner();
        require("snapshot_id", &req.snapshot_id)?;
        let state = self.0.state.lock().await;
        let s = state.snapshots.get(&req.snapshot_id).ok_or_else(|| {
            Status::not_found(format!("snapshot {} does not exist", req.snapshot_id))
        })?;
        Ok(Response::new(csi::GetSnapshotResponse {
            snapshot: Some(Self::csi_snapshot(s)),
        }))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        require("volume_id", &req.volume_id)?;
        let range = req
            .capacity_range
            .ok_or_else(|| Status::invalid_argument("capacity_range is required"))?;
        if range.required_bytes < 0
            || range.limit_bytes < 0
            || (range.limit_bytes > 0 && range.required_bytes > range.limit_bytes)
        {
            return Err(Status::invalid_argument(format!(
                "capacity_range {}..{} is not valid",
                range.required_bytes, range.limit_bytes
            )));
        }
        let mut state = self.0.state.lock().await;
        let Some(v) = state.volumes.get_mut(&req.volume_id) else {
            return Err(Status::not_found(format!(
                "volume {} does not exist",
                req.volume_id
            )));
        };
        let wanted = if range.required_bytes > 0 {
            range.required_bytes
        } else {
            range.limit_bytes
        };
        if range.limit_bytes > 0 && v.capacity_bytes > range.limit_bytes {
            return Err(Status::out_of_range(format!(
                "volume {} has {} bytes, more than limit_bytes {}",
                v.id, v.capacity_bytes, range.limit_bytes
            )));
        }
        if wanted > v.capacity_bytes {
            if v.kind == VolumeKind::Image {
                let image = self.0.layout.volume_data(&v.id, v.kind);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&image)
                    .and_then(|f| f.set_len(wanted as u64))
                    .map_err(|e| io_internal(image.display(), e))?;
            }
            log!(
                "ControllerExpandVolume {}: {} -> {wanted} bytes",
                v.id,
                v.capacity_bytes
            );
            v.capacity_bytes = wanted;
        }
        let reply = csi::ControllerExpandVolumeResponse {
            capacity_bytes: v.capacity_bytes,
            node_expansion_required: v.kind == VolumeKind::Image,
        };
        self.0.save(&state)?;
        Ok(Response::new(reply))
    }

    async fn controller_get_volume(
        &self,
        _: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerGetVolume is not offered (no GET_VOLUME capability)",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not offered (no MODIFY_VOLUME capability)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_hands_out_every_item_once_and_refuses_bad_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let (a, t) = page(&items, "", 2).unwrap();
        let (b, t2) = page(&items, &t, 2).unwrap();
        let (c, t3) = page(&items, &t2, 2).unwrap();
        assert_eq!([a, b, c].concat(), items);
        assert_eq!(t3, "");
        assert_eq!(
            page(&items, "x", 1).unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(&items, "9", 1).unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(&items, "", -1).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
