//! The CSI reply checks (`pvcheck::platform::local::csi::reply`): every reply a CSI driver
//! could send, decoded as tonic decodes it (prost) and checked against the spec as pvcheck's
//! orchestrator checks it. A driver is third-party code: a reply is either accepted or refused
//! with a sentence, never a panic, and what was accepted keeps what the spec requires.
//!
//! Input layout: byte 0 picks the reply (Probe, GetPluginInfo, the three capability lists,
//! NodeGetInfo, CreateVolume, ControllerExpandVolume, NodeExpandVolume, CreateSnapshot),
//! byte 1 the size asked for (as a power of two) and the variant of the request; the rest is the
//! protobuf-encoded reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use pvcheck::platform::local::csi::co::Caps;
use pvcheck::platform::local::csi::{proto, reply};

fn decode<M: Message + Default>(b: &[u8]) -> Option<M> {
    M::decode(b).ok()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (which, knob, body) = (data[0] % 10, data[1], &data[2..]);
    let asked: u64 = 1 << (knob % 48);
    let mut caps = Caps::default();
    match which {
        0 => {
            if let Some(r) = decode::<proto::ProbeResponse>(body) {
                let _ = reply::probe(&r);
            }
        }
        1 => {
            if let Some(r) = decode::<proto::GetPluginInfoResponse>(body)
                && reply::plugin_info(&r).is_ok()
            {
                assert!(reply::valid_plugin_name(&r.name) && !r.vendor_version.is_empty());
            }
        }
        2 => {
            if let Some(r) = decode::<proto::GetPluginCapabilitiesResponse>(body) {
                reply::plugin_capabilities(&r, &mut caps);
            }
        }
        3 => {
            if let Some(r) = decode::<proto::ControllerGetCapabilitiesResponse>(body) {
                reply::controller_capabilities(&r, &mut caps);
            }
        }
        4 => {
            if let Some(r) = decode::<proto::NodeGetCapabilitiesResponse>(body) {
                reply::node_capabilities(&r, &mut caps);
            }
        }
        5 => {
            if let Some(r) = decode::<proto::NodeGetInfoResponse>(body)
                && let Ok((id, _)) = reply::node_info(&r)
            {
                assert!(!id.is_empty());
            }
        }
        6 => {
            let Some(r) = decode::<proto::CreateVolumeResponse>(body) else {
                return;
            };
            let source = (knob & 0x80 != 0).then(|| proto::VolumeContentSource {
                r#type: Some(proto::volume_content_source::Type::Volume(
                    proto::volume_content_source::VolumeSource {
                        volume_id: "source".into(),
                    },
                )),
            });
            let req = proto::CreateVolumeRequest {
                name: "pvcheck-fuzz".into(),
                capacity_range: Some(proto::CapacityRange {
                    required_bytes: asked as i64,
                    limit_bytes: 0,
                }),
                volume_content_source: source,
                ..Default::default()
            };
            if let Ok(v) = reply::created_volume(&req, &r) {
                assert!(!v.id.is_empty());
                assert!(v.capacity == 0 || v.capacity >= asked, "accepted a smaller volume");
            }
        }
        7 => {
            if let Some(r) = decode::<proto::ControllerExpandVolumeResponse>(body)
                && let Ok((cap, _)) = reply::controller_expanded(asked, &r)
            {
                assert!(cap >= asked, "accepted a smaller expansion");
            }
        }
        8 => {
            if let Some(r) = decode::<proto::NodeExpandVolumeResponse>(body) {
                let _ = reply::node_expanded(asked, &r);
            }
        }
        _ => {
            if let Some(r) = decode::<proto::CreateSnapshotResponse>(body) {
                let first = (knob & 0x80 != 0).then_some("first-id");
                if let Ok(s) = reply::created_snapshot("source", first, &r) {
                    assert!(!s.id.is_empty());
                    assert!(first.is_none_or(|f| f == s.id));
                }
            }
        }
    }
    let _ = format!("{caps:?}");
});
