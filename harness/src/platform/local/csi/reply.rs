//! What the spec requires of each reply, checked without a connection: a reply is a value,
//! the verdict is `Ok` or the sentence that names the breach. [`super::co`] makes the calls and
//! wraps a breach with the masked request and reply; `fuzz/fuzz_targets/csi_reply.rs` feeds
//! these functions every reply a driver could send (a driver is third-party code).

use std::collections::HashMap;

use super::co::{Caps, CsiVolume};
use super::proto;

/// `Probe`: `ready: false` after the driver was found ready is a breach (absent means ready).
pub fn probe(r: &proto::ProbeResponse) -> Result<(), String> {
    if r.ready == Some(false) {
        return Err("ready: false after the driver was found ready".into());
    }
    Ok(())
}

/// A plugin name as the spec defines it: ≤ 63 characters, alphanumerics, `-` and `.`,
/// beginning and ending alphanumeric.
pub fn valid_plugin_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.as_bytes()[n.len() - 1].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `GetPluginInfo`: a valid name and a vendor version (both REQUIRED).
pub fn plugin_info(r: &proto::GetPluginInfoResponse) -> Result<(), String> {
    if !valid_plugin_name(&r.name) {
        return Err(format!(
            "name {:?} is not a valid plugin name (REQUIRED: ≤63 characters, alphanumerics, '-', '.', beginning and ending alphanumeric)",
            r.name
        ));
    }
    if r.vendor_version.is_empty() {
        return Err("vendor_version is empty (REQUIRED)".into());
    }
    Ok(())
}

/// `GetPluginCapabilities` into `caps` (unknown values are ignored, as the sidecars do).
pub fn plugin_capabilities(r: &proto::GetPluginCapabilitiesResponse, caps: &mut Caps) {
    use proto::plugin_capability::{Type as PT, service::Type as ST, volume_expansion::Type as ET};
    for c in &r.capabilities {
        match &c.r#type {
            Some(PT::Service(s)) => match ST::try_from(s.r#type) {
                Ok(ST::ControllerService) => caps.controller_service = true,
                Ok(ST::VolumeAccessibilityConstraints) => caps.accessibility_constraints = true,
                _ => {}
            },
            Some(PT::VolumeExpansion(e)) => match ET::try_from(e.r#type) {
                Ok(ET::Online) => caps.online_expansion = true,
                Ok(ET::Offline) => caps.offline_expansion = true,
                _ => {}
            },
            None => {}
        }
    }
}

/// `ControllerGetCapabilities` into `caps`.
pub fn controller_capabilities(r: &proto::ControllerGetCapabilitiesResponse, caps: &mut Caps) {
    use proto::controller_service_capability::{Type as CT, rpc::Type as R};
    for c in &r.capabilities {
        if let Some(CT::Rpc(rpc)) = &c.r#type {
            match R::try_from(rpc.r#type) {
                Ok(R::CreateDeleteVolume) => caps.create_delete_volume = true,
                Ok(R::PublishUnpublishVolume) => caps.publish_unpublish = true,
                Ok(R::ExpandVolume) => caps.controller_expand = true,
                Ok(R::CreateDeleteSnapshot) => caps.snapshots = true,
                Ok(R::CloneVolume) => caps.clone = true,
                _ => {}
            }
        }
    }
}

/// `NodeGetCapabilities` into `caps`.
pub fn node_capabilities(r: &proto::NodeGetCapabilitiesResponse, caps: &mut Caps) {
    use proto::node_service_capability::{Type as NT, rpc::Type as NR};
    for c in &r.capabilities {
        if let Some(NT::Rpc(rpc)) = &c.r#type {
            match NR::try_from(rpc.r#type) {
                Ok(NR::StageUnstageVolume) => caps.stage_unstage = true,
                Ok(NR::GetVolumeStats) => caps.volume_stats = true,
                Ok(NR::ExpandVolume) => caps.node_expand = true,
                _ => {}
            }
        }
    }
}

/// `NodeGetInfo`: the node id (REQUIRED) and the topology the volumes will be asked for.
pub fn node_info(
    r: &proto::NodeGetInfoResponse,
) -> Result<(String, Option<HashMap<String, String>>), String> {
    if r.node_id.is_empty() {
        return Err("node_id is empty (REQUIRED)".into());
    }
    Ok((
        r.node_id.clone(),
        r.accessible_topology.as_ref().map(|t| t.segments.clone()),
    ))
}

/// `CreateVolume`: a volume with an id, capacity ≥ required (0 means unknown), and the content
/// source asked for carried through.
pub fn created_volume(
    req: &proto::CreateVolumeRequest,
    r: &proto::CreateVolumeResponse,
) -> Result<CsiVolume, String> {
    let Some(v) = r.volume.as_ref() else {
        return Err("the reply has no volume (REQUIRED)".into());
    };
    if v.volume_id.is_empty() {
        return Err("volume_id is empty (REQUIRED)".into());
    }
    let required = req
        .capacity_range
        .as_ref()
        .map(|c| c.required_bytes)
        .unwrap_or(0);
    if v.capacity_bytes < 0 || (v.capacity_bytes != 0 && v.capacity_bytes < required) {
        return Err(format!(
            "capacity_bytes {} is less than the required_bytes {required} asked for",
            v.capacity_bytes
        ));
    }
    if req.volume_content_source.is_some()
        && v.content_source.is_some()
        && v.content_source != req.volume_content_source
    {
        return Err("content_source of the new volume differs from the one asked for".into());
    }
    Ok(CsiVolume {
        name: req.name.clone(),
        id: v.volume_id.clone(),
        capacity: v.capacity_bytes.max(0) as u64,
        context: v.volume_context.clone(),
    })
}

/// `ControllerExpandVolume`: the new capacity (≥ asked) and whether the node must grow too.
pub fn controller_expanded(
    new_size: u64,
    r: &proto::ControllerExpandVolumeResponse,
) -> Result<(u64, bool), String> {
    if r.capacity_bytes < 0 || (r.capacity_bytes as u64) < new_size {
        return Err(format!(
            "capacity_bytes {} is less than the required_bytes {new_size} asked for",
            r.capacity_bytes
        ));
    }
    Ok((r.capacity_bytes as u64, r.node_expansion_required))
}

/// `NodeExpandVolume`: capacity ≥ asked when given (0 means not reported).
pub fn node_expanded(new_size: u64, r: &proto::NodeExpandVolumeResponse) -> Result<(), String> {
    if r.capacity_bytes < 0 || (r.capacity_bytes != 0 && (r.capacity_bytes as u64) < new_size) {
        return Err(format!(
            "capacity_bytes {} is less than the required_bytes {new_size} asked for",
            r.capacity_bytes
        ));
    }
    Ok(())
}

/// A snapshot as `CreateSnapshot` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub ready: bool,
}

/// `CreateSnapshot` of `source`: an id and the source (both REQUIRED), and the same id as the
/// first reply when the snapshotter repeats the call (`first`).
pub fn created_snapshot(
    source: &str,
    first: Option<&str>,
    r: &proto::CreateSnapshotResponse,
) -> Result<Snapshot, String> {
    let Some(s) = r.snapshot.as_ref() else {
        return Err("the reply has no snapshot (REQUIRED)".into());
    };
    if s.snapshot_id.is_empty() || s.source_volume_id != source {
        return Err(
            "snapshot_id is empty or source_volume_id is not the volume asked for (both REQUIRED)"
                .into(),
        );
    }
    if let Some(id) = first
        && id != s.snapshot_id
    {
        return Err(format!(
            "the same CreateSnapshot again gave snapshot {}, the first gave {id}: not idempotent",
            s.snapshot_id
        ));
    }
    Ok(Snapshot {
        id: s.snapshot_id.clone(),
        ready: s.ready_to_use,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_req(required: i64) -> proto::CreateVolumeRequest {
        proto::CreateVolumeRequest {
            name: "v".into(),
            capacity_range: Some(proto::CapacityRange {
                required_bytes: required,
                limit_bytes: 0,
            }),
            ..Default::default()
        }
    }

    fn created(id: &str, capacity: i64) -> proto::CreateVolumeResponse {
        proto::CreateVolumeResponse {
            volume: Some(proto::Volume {
                volume_id: id.into(),
                capacity_bytes: capacity,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_volume_smaller_than_asked_is_a_breach_but_unknown_capacity_is_not() {
        let req = create_req(1 << 20);
        assert!(
            created_volume(&req, &created("a", 4096))
                .unwrap_err()
                .contains("less than")
        );
        assert_eq!(created_volume(&req, &created("a", 0)).unwrap().capacity, 0);
        assert!(created_volume(&req, &created("a", -1)).is_err());
        assert!(
            created_volume(&req, &created("", 1 << 20))
                .unwrap_err()
                .contains("volume_id")
        );
        assert!(created_volume(&req, &proto::CreateVolumeResponse { volume: None }).is_err());
    }

    /// A negative capacity is never "at least what was asked", even where a cast to u64 would
    /// make it huge.
    #[test]
    fn a_negative_expanded_capacity_is_a_breach() {
        let r = proto::ControllerExpandVolumeResponse {
            capacity_bytes: -1,
            node_expansion_required: false,
        };
        assert!(controller_expanded(1 << 20, &r).is_err());
        let n = proto::NodeExpandVolumeResponse { capacity_bytes: -5 };
        assert!(node_expanded(1, &n).is_err());
    }

    #[test]
    fn a_second_snapshot_id_for_the_same_request_is_not_idempotent() {
        let r = proto::CreateSnapshotResponse {
            snapshot: Some(proto::Snapshot {
                snapshot_id: "s2".into(),
                source_volume_id: "v".into(),
                ready_to_use: true,
                ..Default::default()
            }),
        };
        assert!(
            created_snapshot("v", Some("s1"), &r)
                .unwrap_err()
                .contains("idempotent")
        );
        assert!(created_snapshot("w", None, &r).is_err());
        assert_eq!(
            created_snapshot("v", Some("s2"), &r).unwrap(),
            Snapshot {
                id: "s2".into(),
                ready: true
            }
        );
    }

    #[test]
    fn plugin_names_follow_the_spec() {
        assert!(valid_plugin_name("hostpath.csi.k8s.io"));
        for bad in ["", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(!valid_plugin_name(bad), "{bad:?}");
        }
    }
}
