//! The CSI calls pvcheck makes, in the order a CO makes them, with their trial names.

use std::fmt;

/// One CSI RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Probe,
    GetPluginInfo,
    GetPluginCapabilities,
    ControllerGetCapabilities,
    NodeGetCapabilities,
    NodeGetInfo,
    CreateVolume,
    ControllerPublishVolume,
    NodeStageVolume,
    NodePublishVolume,
    NodeGetVolumeStats,
    ControllerExpandVolume,
    NodeExpandVolume,
    CreateSnapshot,
    NodeUnpublishVolume,
    NodeUnstageVolume,
    ControllerUnpublishVolume,
    DeleteSnapshot,
    DeleteVolume,
}

impl Call {
    /// Every call, each a `csi::<name>` trial.
    pub const ALL: [Call; 19] = [
        Call::Probe,
        Call::GetPluginInfo,
        Call::GetPluginCapabilities,
        Call::ControllerGetCapabilities,
        Call::NodeGetCapabilities,
        Call::NodeGetInfo,
        Call::CreateVolume,
        Call::ControllerPublishVolume,
        Call::NodeStageVolume,
        Call::NodePublishVolume,
        Call::NodeGetVolumeStats,
        Call::ControllerExpandVolume,
        Call::NodeExpandVolume,
        Call::CreateSnapshot,
        Call::NodeUnpublishVolume,
        Call::NodeUnstageVolume,
        Call::ControllerUnpublishVolume,
        Call::DeleteSnapshot,
        Call::DeleteVolume,
    ];

    /// The trial name (`csi::<name>`): the RPC in snake case.
    pub fn name(self) -> &'static str {
        match self {
            Call::Probe => "probe",
            Call::GetPluginInfo => "get_plugin_info",
            Call::GetPluginCapabilities => "get_plugin_capabilities",
            Call::ControllerGetCapabilities => "controller_get_capabilities",
            Call::NodeGetCapabilities => "node_get_capabilities",
            Call::NodeGetInfo => "node_get_info",
            Call::CreateVolume => "create_volume",
            Call::ControllerPublishVolume => "controller_publish_volume",
            Call::NodeStageVolume => "node_stage_volume",
            Call::NodePublishVolume => "node_publish_volume",
            Call::NodeGetVolumeStats => "node_get_volume_stats",
            Call::ControllerExpandVolume => "controller_expand_volume",
            Call::NodeExpandVolume => "node_expand_volume",
            Call::CreateSnapshot => "create_snapshot",
            Call::NodeUnpublishVolume => "node_unpublish_volume",
            Call::NodeUnstageVolume => "node_unstage_volume",
            Call::ControllerUnpublishVolume => "controller_unpublish_volume",
            Call::DeleteSnapshot => "delete_snapshot",
            Call::DeleteVolume => "delete_volume",
        }
    }

    /// The RPC as the spec names it.
    pub fn rpc(self) -> &'static str {
        match self {
            Call::Probe => "Probe",
            Call::GetPluginInfo => "GetPluginInfo",
            Call::GetPluginCapabilities => "GetPluginCapabilities",
            Call::ControllerGetCapabilities => "ControllerGetCapabilities",
            Call::NodeGetCapabilities => "NodeGetCapabilities",
            Call::NodeGetInfo => "NodeGetInfo",
            Call::CreateVolume => "CreateVolume",
            Call::ControllerPublishVolume => "ControllerPublishVolume",
            Call::NodeStageVolume => "NodeStageVolume",
            Call::NodePublishVolume => "NodePublishVolume",
            Call::NodeGetVolumeStats => "NodeGetVolumeStats",
            Call::ControllerExpandVolume => "ControllerExpandVolume",
            Call::NodeExpandVolume => "NodeExpandVolume",
            Call::CreateSnapshot => "CreateSnapshot",
            Call::NodeUnpublishVolume => "NodeUnpublishVolume",
            Call::NodeUnstageVolume => "NodeUnstageVolume",
            Call::ControllerUnpublishVolume => "ControllerUnpublishVolume",
            Call::DeleteSnapshot => "DeleteSnapshot",
            Call::DeleteVolume => "DeleteVolume",
        }
    }

    pub fn from_name(name: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rpc())
    }
}
