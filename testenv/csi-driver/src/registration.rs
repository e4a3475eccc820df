//! kubelet's plugin-registration service (what node-driver-registrar serves): kubelet finds
//! `<registration-dir>/<drivername>-reg.sock`, calls GetInfo, and answers with
//! NotifyRegistrationStatus.

use std::path::{Path, PathBuf};

use tonic::{Request, Response, Status};

use crate::log;
use crate::pluginregistration::registration_server::Registration;
use crate::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};

/// The plugin type kubelet's CSI handler registers.
pub const CSI_PLUGIN_TYPE: &str = "CSIPlugin";
/// CSI versions offered to kubelet (kubelet accepts 1.x).
pub const SUPPORTED_VERSIONS: [&str; 1] = ["1.0.0"];

pub fn socket_path(registration_dir: &Path, driver_name: &str) -> PathBuf {
    registration_dir.join(format!("{driver_name}-reg.sock"))
}

pub struct RegistrationService {
    pub driver_name: String,
    /// The CSI socket's path as kubelet sees it (--kubelet-registration-path).
    pub endpoint: String,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        log!("registration: kubelet asked for plugin info");
        Ok(Response::new(PluginInfo {
            r#type: CSI_PLUGIN_TYPE.to_string(),
            name: self.driver_name.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: SUPPORTED_VERSIONS.map(String::from).to_vec(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            log!("registration: kubelet registered {}", self.driver_name);
        } else {
            log!(
                "registration: kubelet refused {}: {}",
                self.driver_name,
                status.error
            );
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
