//! The one place where a run's platform is chosen (`--platform local|kubernetes`, alias `kube`).
//!
//! `pvcheck run` and `pvcheck cleanup` call [`select`]; nothing else constructs a platform. A
//! listing (`--list`) gets a platform that plans without creating or contacting anything; a run
//! gets one that may check the classes against what exists (a StorageClass that is not there is
//! a usage error before anything is created) and that records everything under the run id.
//!
//! The platform's words stop here: the command line fills a [`Choice`] (with the Kubernetes
//! options, [`KubeOptions`]) and everything above the boundary (the run, `--phase`) carries it
//! without looking inside; what a later command needs to reach the same platform again is
//! [`Choice::resume_args`]. A pvcheck built without the `kubernetes` feature still parses
//! `--platform kubernetes` and refuses it here with [`WITHOUT_KUBERNETES`] (exit 2).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

    /// `Err` with the one line for exit 2 when this pvcheck was built without the platform
    /// (the `kubernetes` feature), checked before anything is created.
    pub fn built_in(self) -> Result<(), String> {
        match self {
            PlatformKind::Kubernetes if !cfg!(feature = "kubernetes") => {
                Err(no_kubernetes_platform())
            }
            _ => Ok(()),
        }
    }
}

/// What the command line says about the cluster (the Kubernetes platform, `pvcheck classes`).
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// `--kubeconfig` (default: `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig other than its current one.
    pub context: Option<String>,
    /// `--agent-image`: the image the agent pods run.
    pub agent_image: Option<String>,
    /// `--image-pull-secret NAME` (repeatable): pull secrets for the agent pods.
    pub image_pull_secrets: Vec<String>,
    /// `pvcheck cleanup --older-than D`: runs older than this count as abandoned.
    pub older_than: Option<Duration>,
    /// `--phase after-upgrade --resume RUN_ID`: the run whose namespace and kept volumes this
    /// run takes over.
    pub resume: Option<String>,
}

/// Everything the command line says about the platform.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub kind: PlatformKind,
    /// The Kubernetes platform's options (ignored by the local platform).
    pub kube: KubeOptions,
}

impl Choice {
    /// The flags that reach this platform again from another command (`--platform` first):
    /// the cluster, context, agent image and pull secrets on Kubernetes. `--phase
    /// after-upgrade`'s resume command is built from them.
    pub fn resume_args(&self) -> Vec<String> {
        let mut args = vec!["--platform".to_string(), self.kind.name().to_string()];
        if self.kind != PlatformKind::Kubernetes {
            return args;
        }
        let k = &self.kube;
        let mut flag = |name: &str, value: String| {
            args.push(name.into());
            args.push(value);
        };
        if let Some(c) = &k.kubeconfig {
            flag("--kubeconfig", c.display().to_string());
        }
        if let Some(x) = &k.context {
            flag("--context", x.clone());
        }
        if let Some(i) = &k.agent_image {
            flag("--agent-image", i.clone());
        }
        for s in &k.image_pull_secrets {
            flag("--image-pull-secret", s.clone());
        }
        args
    }
}

/// The one line of a pvcheck built without the `kubernetes` feature asked for the Kubernetes
/// platform (exit 2).
pub const WITHOUT_KUBERNETES: &str = "this pvcheck was built without Kubernetes support (cargo feature `kubernetes`): use --platform local, or a pvcheck built with default features";

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

fn no_kubernetes_platform() -> String {
    format!("--platform kubernetes: {WITHOUT_KUBERNETES}")
}

/// Builds the platform of a run, a listing or a cleanup.
pub fn select(choice: &Choice, ctx: SelectCtx<'_>) -> Result<Arc<dyn Platform>, SelectError> {
    match choice.kind {
        PlatformKind::Local => Ok(Arc::new(LocalPlatform::new(
            ctx.registry,
            ctx.state_dir,
            ctx.agent,
        ))),
        #[cfg(feature = "kubernetes")]
        PlatformKind::Kubernetes => super::kube::select(&choice.kube, ctx),
        #[cfg(not(feature = "kubernetes"))]
        PlatformKind::Kubernetes => {
            let _ = ctx;
            Err(SelectError::Usage(no_kubernetes_platform()))
        }
    }
}

/// `pvcheck classes`: the cluster's StorageClasses, CSIDrivers and VolumeSnapshotClasses and a
/// starter class file; returns the exit code.
pub fn classes_main(opts: &KubeOptions) -> u8 {
    #[cfg(feature = "kubernetes")]
    {
        super::kube::discover::main(opts)
    }
    #[cfg(not(feature = "kubernetes"))]
    {
        let _ = opts;
        eprintln!("pvcheck: classes: {WITHOUT_KUBERNETES}");
        exit_code::USAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--phase before-upgrade`'s resume command is pasted into another pipeline: it must reach
    /// the same cluster with the same image, flags in the order the command line documents.
    #[test]
    fn resume_args_reach_the_same_cluster_and_only_the_kubernetes_platform_has_more() {
        let mut choice = Choice {
            kind: PlatformKind::Kubernetes,
            kube: KubeOptions {
                kubeconfig: Some("/etc/kube/my config".into()),
                context: Some("ctx".into()),
                agent_image: Some("reg.example/pvcheck/agent:1".into()),
                image_pull_secrets: vec!["a".into(), "b".into()],
                older_than: Some(Duration::from_secs(60)),
                resume: Some("0123abcd".into()),
            },
        };
        assert_eq!(
            choice.resume_args().join(" "),
            "--platform kubernetes --kubeconfig /etc/kube/my config --context ctx --agent-image reg.example/pvcheck/agent:1 --image-pull-secret a --image-pull-secret b"
        );
        choice.kind = PlatformKind::Local;
        assert_eq!(choice.resume_args(), ["--platform", "local"]);
    }

    #[test]
    fn the_kubernetes_platform_is_refused_in_one_line_only_when_it_is_not_built_in() {
        assert_eq!(PlatformKind::Local.built_in(), Ok(()));
        let kube = PlatformKind::Kubernetes.built_in();
        if cfg!(feature = "kubernetes") {
            assert_eq!(kube, Ok(()));
        } else {
            let e = kube.unwrap_err();
            assert!(
                e.starts_with(
                    "--platform kubernetes: this pvcheck was built without Kubernetes support"
                ) && !e.contains('\n'),
                "{e}"
            );
        }
    }
}
