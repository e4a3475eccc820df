//! CSI Identity service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::csi::identity_server::Identity;
use crate::csi::plugin_capability::{self, service, volume_expansion};
use crate::csi::{self, PluginCapability};
use crate::driver::Driver;

pub struct IdentityService(pub Arc<Driver>);

fn capability(t: plugin_capability::Type) -> PluginCapability {
    PluginCapability { r#type: Some(t) }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        let c = &self.0.config;
        let faults: Vec<&str> = c.faults.iter().map(|f| f.name()).collect();
        let mut manifest = std::collections::HashMap::new();
        if !faults.is_empty() {
            manifest.insert("pvcheck.io/faults".to_string(), faults.join(","));
        }
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: c.driver_name.clone(),
            vendor_version: c.vendor_version.clone(),
            manifest,
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        let service = |t: service::Type| {
            capability(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            ))
        };
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(service::Type::ControllerService),
                service(service::Type::VolumeAccessibilityConstraints),
                capability(plugin_capability::Type::VolumeExpansion(
                    plugin_capability::VolumeExpansion {
                        r#type: volume_expansion::Type::Online as i32,
                    },
                )),
            ],
        }))
    }

    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}
