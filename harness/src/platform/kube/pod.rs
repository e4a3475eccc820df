//! The `Pod` of the Kubernetes platform: a holder pod keeps the volume attached and mounted on
//! one node (as the local platform keeps it mounted); each agent run is its own pod on that
//! node, pinned by node affinity, whose log carries the agent's output. Nothing is exec'd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agent_pod;
use super::context::VolumeCtx;
use super::podspec;
use crate::config::kube::VolumeMode;
use crate::platform::{
    AgentBatch, AgentCall, AgentOutput, AgentProcess, AgentTarget, Capacity, PlatformError, Pod,
};

pub struct KubePod {
    pub ctx: Arc<VolumeCtx>,
    /// The holder pod.
    pub holder: String,
    pub node: String,
    /// The mount, or a Block volume's device, in the agent's container.
    pub data_dir: PathBuf,
}

impl KubePod {
    pub(super) fn output(
        framed: super::logs::Framed,
        command: String,
        elapsed: Duration,
    ) -> AgentOutput {
        AgentOutput {
            command,
            code: framed.code(),
            signal: framed.signal(),
            stdout: framed.stdout,
            stderr: framed.stderr,
            elapsed,
        }
    }
}

impl KubePod {
    /// The holder pod is what keeps the volume attached and mounted between agent runs: one
    /// evicted (or deleted by someone else) in the middle of a check fails the trial, naming
    /// it, even when the agent run itself went through.
    fn holder_still_there(&self) -> Result<(), PlatformError> {
        holder_check(&self.ctx, &self.holder, &self.node)
    }
}

/// [`KubePod::holder_still_there`] for pod `holder` on `node` (one GET).
pub fn holder_check(ctx: &VolumeCtx, holder: &str, node: &str) -> Result<(), PlatformError> {
    match ctx
        .shared
        .conn
        .block_on(agent_pod::holder_lost(ctx, holder))?
    {
        None => Ok(()),
        Some(why) => Err(PlatformError::Other(format!(
            "holder pod {}/{holder} (keeping the volume mounted on node {node}) {why} during the check",
            ctx.shared.namespace
        ))),
    }
}

impl Pod for KubePod {
    fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn target(&self) -> AgentTarget<'_> {
        match self.ctx.volume_mode {
            VolumeMode::Filesystem => AgentTarget::Dir(&self.data_dir),
            VolumeMode::Block => AgentTarget::Device(&self.data_dir),
        }
    }

    fn node(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn capacity(&self) -> Result<Capacity, PlatformError> {
        let name = self.ctx.next_name("statfs");
        let call = AgentCall::new(Vec::<String>::new(), self.ctx.timeouts.pod_start);
        let (framed, _) = self
            .ctx
            .shared
            .conn
            .block_on(agent_pod::run(&self.ctx, &name, &call, &self.node, true))?;
        let s = framed.statfs().cloned().unwrap_or_default();
        match (
            s.get("total_bytes").and_then(|v| v.as_u64()),
            s.get("available_bytes").and_then(|v| v.as_u64()),
        ) {
            (Some(total_bytes), Some(available_bytes)) => Ok(Capacity {
                total_bytes,
                available_bytes,
            }),
            _ => Err(PlatformError::Other(format!(
                "pod {}/{name}: no capacity from inside: {}",
                self.ctx.shared.namespace,
                s.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("the agent reported nothing")
            ))),
        }
    }

    fn run_agent(&mut self, call: &AgentCall) -> Result<AgentOutput, PlatformError> {
        let name = self.ctx.next_name("agent");
        let start = Instant::now();
        let (framed, command) = self
            .ctx
            .shared
            .conn
            .block_on(agent_pod::run(&self.ctx, &name, call, &self.node, false))?;
        self.holder_still_there()?;
        let elapsed = framed.elapsed().unwrap_or_else(|| start.elapsed());
        Ok(Self::output(framed, command, elapsed))
    }

    fn spawn_agent(
        &mut self,
        call: &AgentCall,
        stdout_to: &Path,
    ) -> Result<Box<dyn AgentProcess>, PlatformError> {
        let ctx = self.ctx.clone();
        let name = ctx.next_name("agent");
        let conn = &ctx.shared.conn;
        let (cm, agent_args) = conn.block_on(agent_pod::call_inputs(&ctx, &name, call))?;
        let mut args = vec![
            "pod".to_string(),
            "--statfs".into(),
            podspec::target_path(ctx.volume_mode).into(),
        ];
        if let Some(k) = call.kill_after {
            args.push("--kill-after".into());
            args.push(format!("{}ms", k.as_millis()));
        }
        args.push("--".into());
        args.extend(agent_args.iter().cloned());
        let command = format!(
            "pvcheck-agent {} (in pod {}/{name} on node {})",
            agent_args.join(" "),
            ctx.shared.namespace,
            self.node
        );
        let pod = podspec::build(&agent_pod::plan(
            &ctx,
            &name,
            args,
            cm.clone(),
            Some(self.node.clone()),
            "agent",
        ));
        let started = conn.block_on(agent_pod::create_and_start(
            &ctx,
            pod,
            ctx.timeouts.pod_start,
            false,
        ));
        if let Err(e) = started {
            conn.block_on(async {
                let _ = agent_pod::delete(&ctx, &name, 0, false, Duration::ZERO).await;
                if let Some(cm) = &cm {
                    agent_pod::delete_config_map(&ctx, cm).await;
                }
            });
            return Err(e);
        }
        let follow = conn.rt.spawn(agent_pod::follow_log(
            ctx.client.clone(),
            ctx.shared.namespace.clone(),
            name.clone(),
            stdout_to.to_path_buf(),
        ));
        Ok(Box::new(KubeAgent {
            ctx: ctx.clone(),
            name,
            cm,
            command,
            stdout_to: stdout_to.to_path_buf(),
            follow: Some(follow),
            killed_by_supervisor: call.kill_after.is_some(),
            killed_by_harness: false,
            started: Instant::now(),
        }))
    }

    fn start_batch(
        &mut self,
        calls: &[AgentCall],
    ) -> Result<Option<Box<dyn AgentBatch>>, PlatformError> {
        Ok(super::batch::start(self, calls)?.map(|b| Box::new(b) as Box<dyn AgentBatch>))
    }
}

/// An agent running in its own pod, its log followed into a harness-side file.
pub struct KubeAgent {
    ctx: Arc<VolumeCtx>,
    name: String,
    cm: Option<String>,
    command: String,
    /// Where the agent's stdout goes (harness side).
    stdout_to: PathBuf,
    follow: Option<tokio::task::JoinHandle<Result<super::logs::Framed, PlatformError>>>,
    /// `--kill-after` was given: the supervisor in the pod sends the SIGKILL.
    killed_by_supervisor: bool,
    /// [`AgentProcess::kill`] deleted the pod (grace period 0): a log without its end line is
    /// then that SIGKILL, not an agent that vanished by itself.
    killed_by_harness: bool,
    started: Instant,
}

impl AgentProcess for KubeAgent {
    fn kill(&mut self) -> Result<(), PlatformError> {
        if self.killed_by_supervisor {
            // The supervisor SIGKILLs the agent at the moment the harness chose; deleting the
            // pod would be SIGTERM first, and would lose the log.
            return Ok(());
        }
        let ctx = self.ctx.clone();
        if self.follow.as_ref().is_some_and(|f| f.is_finished()) {
            // The log stream ended before the kill: the kubelet serving it went away (a
            // restart) and the agent wrote on. Its whole log, read again now, has what it
            // printed since; kept as the result unless the pod is gone already.
            let read = ctx
                .shared
                .conn
                .block_on(agent_pod::read_log(&ctx, &self.name));
            if let Ok(framed) = read
                && std::fs::write(&self.stdout_to, framed.stdout.as_bytes()).is_ok()
            {
                self.follow = Some(ctx.shared.conn.rt.spawn(async move { Ok(framed) }));
            }
        }
        self.killed_by_harness = true;
        ctx.shared.conn.block_on(agent_pod::delete(
            &ctx,
            &self.name,
            0,
            false,
            Duration::ZERO,
        ))
    }

    fn wait(&mut self, timeout: Duration) -> Result<AgentOutput, PlatformError> {
        let ctx = self.ctx.clone();
        let Some(follow) = self.follow.take() else {
            return Err(PlatformError::Other(
                "the agent was already waited for".into(),
            ));
        };
        let framed = ctx.shared.conn.block_on(async {
            match tokio::time::timeout(timeout, follow).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(PlatformError::Other(format!(
                    "following the agent's log: {e}"
                ))),
                Err(_) => Err(PlatformError::Timeout {
                    command: self.command.clone(),
                    limit: timeout,
                }),
            }
        });
        let killed_by_harness = self.killed_by_harness;
        let stopped = ctx.shared.conn.block_on(async {
            // Told to stop by someone else (the harness's own kill is not that): read before
            // pvcheck deletes the pod, while its eviction may still show.
            let stopped = match &framed {
                Ok(f) if !killed_by_harness => {
                    agent_pod::stopped_by_others(&ctx, &self.name, f).await
                }
                _ => None,
            };
            let _ = agent_pod::delete(&ctx, &self.name, 0, false, Duration::ZERO).await;
            if let Some(cm) = &self.cm {
                agent_pod::delete_config_map(&ctx, cm).await;
            }
            stopped
        });
        let framed = framed?;
        if let Some(why) = stopped {
            return Err(PlatformError::Other(why));
        }
        crate::platform::timeline::since(
            crate::platform::timeline::Wait::AgentRan,
            &self.name,
            self.started,
        );
        // The pod deleted with grace period 0: the supervisor (PID 1) only notes the SIGTERM,
        // and it and the agent end by the runtime's SIGKILL before it prints its end line.
        let signal = match (&framed.end, self.killed_by_harness) {
            (None, true) => Some(libc::SIGKILL),
            _ => framed.signal(),
        };
        Ok(AgentOutput {
            command: self.command.clone(),
            code: framed.code(),
            signal,
            stdout: String::new(),
            stderr: framed.stderr,
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for KubeAgent {
    fn drop(&mut self) {
        if let Some(f) = self.follow.take() {
            f.abort();
            let ctx = self.ctx.clone();
            let name = self.name.clone();
            let cm = self.cm.clone();
            ctx.shared.conn.block_on(async {
                let _ = agent_pod::delete(&ctx, &name, 0, false, Duration::ZERO).await;
                if let Some(cm) = &cm {
                    agent_pod::delete_config_map(&ctx, cm).await;
                }
            });
        }
    }
}
