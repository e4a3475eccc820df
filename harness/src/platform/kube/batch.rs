//! A class's speed matrix in one agent pod (`pvcheck-agent pod --batch`): each workload is still
//! an agent process of its own with its own figures and its own trial, but the pod starts once.
//! A pod's start (sandbox, publish, container) took 2.7 s of each quick speed trial's 4.0 s on
//! the test cluster (issue 21); nine workloads paid it nine times.
//!
//! The pod's log is followed by a task of its own, which hands each agent's framed output to
//! the batch at its `x` line; [`KubeBatch::next`] takes them in order on the trial's thread, so
//! the waits land in that trial's timeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::mpsc;

use super::agent_pod;
use super::context::VolumeCtx;
use super::logs::{Framed, Parser};
use super::pod::{KubePod, holder_check};
use super::podspec;
use crate::platform::timeline::{self, Wait};
use crate::platform::{AgentBatch, AgentCall, AgentOutput, PlatformError};

/// Slack beyond a call's own timeout before its output counts as lost (the log's delivery).
const SLACK: Duration = Duration::from_secs(30);

pub struct KubeBatch {
    ctx: Arc<VolumeCtx>,
    name: String,
    node: String,
    holder: String,
    /// Per call: the command as a failure shows it, and its timeout.
    calls: Vec<(String, Duration)>,
    next: usize,
    outputs: mpsc::UnboundedReceiver<Framed>,
    follow: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the batch's pod on the holder's node, or `None` when a call needs what a batch does
/// not carry (input files, a SIGKILL at a moment).
pub fn start(pod: &KubePod, calls: &[AgentCall]) -> Result<Option<KubeBatch>, PlatformError> {
    if calls.is_empty()
        || calls
            .iter()
            .any(|c| !c.inputs.is_empty() || c.kill_after.is_some())
    {
        return Ok(None);
    }
    let ctx = pod.ctx.clone();
    let name = ctx.next_name("batch");
    let argv: Vec<&Vec<String>> = calls.iter().map(|c| &c.args).collect();
    let args = vec![
        "pod".to_string(),
        "--statfs".into(),
        podspec::target_path(ctx.volume_mode).into(),
        "--batch".into(),
        serde_json::to_string(&argv).unwrap_or_default(),
    ];
    let spec = podspec::build(&agent_pod::plan(
        &ctx,
        &name,
        args,
        None,
        Some(pod.node.clone()),
        "agent",
    ));
    let conn = &ctx.shared.conn;
    let started = conn.block_on(agent_pod::create_and_start(
        &ctx,
        spec,
        ctx.timeouts.pod_start,
        false,
    ));
    if let Err(e) = started {
        let _ = conn.block_on(agent_pod::delete(&ctx, &name, 0, false, Duration::ZERO));
        return Err(e);
    }
    let (tx, outputs) = mpsc::unbounded_channel();
    let follow = conn.rt.spawn(follow(
        ctx.client.clone(),
        ctx.shared.namespace.clone(),
        name.clone(),
        tx,
    ));
    let calls = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!(
                    "pvcheck-agent {} (agent {} of {} in pod {}/{name} on node {})",
                    c.args.join(" "),
                    i + 1,
                    calls.len(),
                    ctx.shared.namespace,
                    pod.node
                ),
                c.timeout,
            )
        })
        .collect();
    Ok(Some(KubeBatch {
        ctx,
        name,
        node: pod.node.clone(),
        holder: pod.holder.clone(),
        calls,
        next: 0,
        outputs,
        follow: Some(follow),
    }))
}

/// Follows the pod's log, sending each agent's framed output at its end line.
async fn follow(
    client: kube::Client,
    namespace: String,
    name: String,
    to: mpsc::UnboundedSender<Framed>,
) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let lp = LogParams {
        follow: true,
        ..Default::default()
    };
    let Ok(stream) = api.log_stream(&name, &lp).await else {
        return;
    };
    let mut parser = Parser::default();
    let mut lines = std::pin::pin!(stream.lines());
    while let Ok(Some(line)) = lines.try_next().await {
        parser.line(&line);
        if parser.out.end.is_some() {
            let framed = std::mem::take(&mut parser.out);
            if to.send(framed).is_err() {
                return;
            }
        }
    }
}

impl KubeBatch {
    /// The output of call `i`, when the followed log ended before it: the pod's whole log,
    /// read once it has terminated.
    async fn from_whole_log(&self, i: usize, limit: Duration) -> Result<Framed, PlatformError> {
        let done = agent_pod::until_terminated(&self.ctx, &self.name, limit).await?;
        let log = agent_pod::read_log_text(&self.ctx, &self.name).await?;
        let mut parser = Parser::default();
        let mut seen = 0;
        for l in log.lines() {
            parser.line(l);
            if parser.out.end.is_some() {
                if seen == i {
                    return Ok(parser.out);
                }
                seen += 1;
                parser = Parser::default();
            }
        }
        Err(PlatformError::Other(format!(
            "the agent pod {}/{} ended without the end line of agent {} of {}: {}; stderr: {}",
            self.ctx.shared.namespace,
            self.name,
            i + 1,
            self.calls.len(),
            agent_pod::terminated_reason(done.as_ref()),
            parser.out.stderr.lines().last().unwrap_or("")
        )))
    }
}

impl AgentBatch for KubeBatch {
    fn next(&mut self) -> Option<Result<AgentOutput, PlatformError>> {
        let i = self.next;
        let (command, timeout) = self.calls.get(i)?.clone();
        let waiting = Instant::now();
        let limit = timeout + SLACK;
        let ctx = self.ctx.clone();
        let got = ctx.shared.conn.block_on(async {
            let framed = match tokio::time::timeout(limit, self.outputs.recv()).await {
                Ok(Some(f)) => f,
                Ok(None) => self.from_whole_log(i, limit).await?,
                Err(_) => {
                    return Err(PlatformError::Timeout {
                        command: command.clone(),
                        limit,
                    });
                }
            };
            if let Some(why) = agent_pod::stopped_by_others(&ctx, &self.name, &framed).await {
                return Err(PlatformError::Other(why));
            }
            Ok(framed)
        });
        timeline::since(Wait::AgentRan, &self.name, waiting);
        let out = got.and_then(|framed| {
            holder_check(&self.ctx, &self.holder, &self.node)?;
            let elapsed = framed.elapsed().unwrap_or_else(|| waiting.elapsed());
            Ok(KubePod::output(framed, command, elapsed))
        });
        // After an error the batch is over; the caller stops it.
        self.next = if out.is_ok() { i + 1 } else { self.calls.len() };
        Some(out)
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn stop(mut self: Box<Self>) -> Result<(), PlatformError> {
        self.end(true)
    }
}

impl KubeBatch {
    /// Deletes the pod (grace period 0; waited for until gone when `wait`).
    fn end(&mut self, wait: bool) -> Result<(), PlatformError> {
        let Some(f) = self.follow.take() else {
            return Ok(());
        };
        f.abort();
        let ctx = self.ctx.clone();
        ctx.shared.conn.block_on(agent_pod::delete(
            &ctx,
            &self.name,
            0,
            wait,
            ctx.timeouts.pod_start,
        ))
    }
}

impl Drop for KubeBatch {
    fn drop(&mut self) {
        let _ = self.end(false);
    }
}
