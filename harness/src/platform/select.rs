//! The one place where a run's platform is chosen (`--platform local|kubernetes`, alias `kube`).
//!
//! `pvcheck run` and `pvcheck cleanup` call [`select`]; nothing else constructs a platform. A
//! listing (`--list`) gets a platform that plans without creating or contacting anything; a run
//! gets one that may check the classes against what exists (a StorageClass that is not there is
//! a usage error before anything is created) and that records everything under the run id.

use std::path::PathBuf;
use std::sync::Arc;

use super::local::LocalPlatform;
use super::{AgentBinary, Platform};
use crate::config::ClassSpec;
use crate::exit_code;
use crate::registry::Registry;

/// `--platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlatformKind {
    /// Directories, loop-mounted images and flexVolume drivers on this machine.
    #[default]
    Local,
    /// PVCs per StorageClass and agent pods, through the API server of the current kubeconfig.
    #[value(alias = "kube")]
    Kubernetes,
}

impl PlatformKind {
    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Local => "local",
            PlatformKind::Kubernetes => "kubernetes",
        }
    }
}

/// Everything the command line says about the platform.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub kind: PlatformKind,
    /// The Kubernetes platform's options (ignored by the local platform).
    pub kube: super::kube::KubeOptions,
}

/// What the platform is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Planning only (`--list`, a filter check): nothing is created, no server is contacted.
    List,
    /// A run: the platform may contact its server and check the classes first.
    Run,
    /// `pvcheck cleanup`: finds and removes what other runs left.
    Cleanup,
}

/// What the platform needs from the run.
pub struct SelectCtx<'a> {
    pub registry: Arc<Registry>,
    pub state_dir: PathBuf,
    pub agent: AgentBinary,
    pub classes: &'a [ClassSpec],
    pub purpose: Purpose,
}

/// Why no platform could be set up: a usage error (exit 2: the user must fix something before
/// anything is created) or the infrastructure (exit 5: the API server cannot be reached).
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Infrastructure(String),
}

impl SelectError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SelectError::Usage(_) => exit_code::USAGE,
            SelectError::Infrastructure(_) => exit_code::INFRASTRUCTURE,
        }
    }
}

/// Builds the platform of a run, a listing or a cleanup.
pub fn select(choice: &Choice, ctx: SelectCtx<'_>) -> Result<Arc<dyn Platform>, SelectError> {
    match choice.kind {
        PlatformKind::Local => Ok(Arc::new(LocalPlatform::new(
            ctx.registry,
            ctx.state_dir,
            ctx.agent,
        ))),
        PlatformKind::Kubernetes => super::kube::select(&choice.kube, ctx),
    }
}
