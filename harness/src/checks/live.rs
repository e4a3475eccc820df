//! `integrity::live-upgrade` and `disruption::node-plugin-kill`: the driver is replaced while
//! the agent writes.
//!
//! The agent's `live-stream` appends fsync-acknowledged, checksummed records (the durability
//! log's format) under `live-<n>/` on the volume and probes the mount every second; errors are
//! reported as events and retried, not fatal. Meanwhile the platform replaces the driver:
//! each upgrade step of the class ([`Volume::upgrade_live`]) or a SIGKILL and restart
//! ([`Volume::kill_driver`]), and says when the old driver was gone and the new one answered
//! (the window). Then the stream is killed, every acknowledged record is verified over the
//! mount that survived, the pod is recreated (the new driver unpublishes, unstages, stages and
//! publishes) and every record is verified again.
//!
//! Verdict: a lost or corrupt acknowledged record (verify, or a probe that read back another
//! record) is `data`, always. An I/O error, a mount turned read-only, an operation stalled over
//! 30 s, or a mount the verify cannot read is category `upgrade`, naming the errno and when in
//! the window it came. With `upgrade.drain: true` the stream is stopped and the volume
//! unpublished before each step and published again after it (what such drivers document):
//! then nothing may go wrong at all. `node-plugin-kill` also requires the volume usable (a
//! write and a read) and staged and published exactly once after the restart and after the
//! recreate.
//!
//! `disruption::kubelet-restart` and `disruption::pod-deleted-while-kubelet-down` do the same
//! around the node's kubelet ([`Volume::disrupt_node_agent`], by the class's
//! `disruption.kubelet` commands): stopped and started under the writing agent (then verify in
//! place, usable, recreate, verify), or stopped while every pod of the volume is deleted
//! through the API, started, and the teardown it then owes waited for (pods gone, volume
//! detached); then a new pod on the same node verifies every record it saw acknowledged. What
//! the API showed across (VolumeAttachments unchanged, the driver still in the node's CSINode)
//! is part of the verdict. A failing command is `setup`, naming its stderr.
//!
//! Metrics (`live`): the windows, the errors by kind, the longest stall, the records
//! acknowledged and verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::integrity::{self, Expect};
use super::{CheckCtx, Failure, Verdict, recreate_noticed};
use crate::platform::{
    AgentCall, AgentProcess, DriverWindow, Elsewhere, NodeAgentDisruption, Pod, Volume,
};
use crate::report::results::FailureCategory;

/// Steady writing before the first replacement and after each one.
const LEAD: Duration = Duration::from_secs(3);
/// How long a fresh stream may take to acknowledge its first record, or to say why it cannot
/// (an error, a stall, a full volume), before pvcheck gives up on the window (`setup`).
const FIRST_ACK: Duration = Duration::from_secs(60);
/// A write or probe longer than this is a stall (the agent's `live::STALL`).
const STALL_S: f64 = 30.0;
/// … and longer than this a hang.
const HANG_S: f64 = 120.0;

/// Which check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LiveUpgrade,
    PluginKill,
    /// The kubelet stopped and started under the writing agent.
    KubeletRestart,
    /// The kubelet stopped, the volume's pods deleted, the kubelet started.
    PodDeletedWhileKubeletDown,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LiveUpgrade => "live-upgrade",
            Kind::PluginKill => "node-plugin-kill",
            Kind::KubeletRestart => "kubelet-restart",
            Kind::PodDeletedWhileKubeletDown => "pod-deleted-while-kubelet-down",
        }
    }

    /// The kubelet checks (node access by the class's commands).
    fn is_kubelet(self) -> bool {
        matches!(
            self,
            Kind::KubeletRestart | Kind::PodDeletedWhileKubeletDown
        )
    }
}

/// Why a class cannot run these checks here (before anything is provisioned).
pub fn unsupported(
    kind: Kind,
    class: &crate::config::ClassSpec,
    platform: &dyn crate::platform::Platform,
) -> Option<String> {
    if kind.is_kubelet() {
        if platform.name() != "kubernetes" {
            return Some(format!(
                "the {} platform has no kubelet: the check stops and starts a Kubernetes node's kubelet",
                platform.name()
            ));
        }
        if platform.raw_block(class) {
            return Some("a Block volume: the live stream appends records to files".into());
        }
        if class.disruption.kubelet.is_none() {
            return Some(
                "pvcheck has no node access: a class gives the commands that stop and start a node's kubelet with `disruption: { kubelet: { stop: \"…\", start: \"…\" } }` (env PVCHECK_NODE)".into(),
            );
        }
        return None;
    }
    if kind == Kind::LiveUpgrade {
        let has = class
            .upgrade
            .as_ref()
            .is_some_and(|u| u.command.is_some() || u.driver.is_some() || u.csi.is_some());
        if !has {
            return Some("the class defines no `upgrade`".into());
        }
    }
    if platform.name() == "kubernetes" {
        if platform.raw_block(class) {
            return Some("a Block volume: the live stream appends records to files".into());
        }
        if kind == Kind::PluginKill && !class.disruption.node_plugin_kill {
            return Some(
                "on Kubernetes the driver's node plugin pod is not pvcheck's to delete: a class allows it with `disruption: { node_plugin_kill: true }`".into(),
            );
        }
        if kind == Kind::LiveUpgrade && class.upgrade.as_ref().is_some_and(|u| u.command.is_none())
        {
            return Some(
                "on Kubernetes the upgrade is the class's `upgrade.command` (then its `upgrade.rollout`s): the class gives no command".into(),
            );
        }
        // Whether the driver has a node plugin pod on the volume's node is known once a pod
        // runs: the platform answers Unsupported with the reason then.
        return None;
    }
    if platform.name() != "local" {
        return Some(format!("not built for the {} platform", platform.name()));
    }
    if !matches!(
        class.local,
        Some(crate::config::LocalKind::Csi(_) | crate::config::LocalKind::Flexvolume(_))
    ) {
        return Some(format!(
            "local csi and flexvolume classes only: a class of kind {} has no driver pvcheck replaces under a running pod",
            match &class.local {
                Some(crate::config::LocalKind::Dir(_)) => "dir",
                Some(crate::config::LocalKind::Loop(_)) => "loop",
                Some(crate::config::LocalKind::Flexvolume(_)) => "flexvolume",
                Some(crate::config::LocalKind::Csi(_)) => "csi",
                None => "-",
            }
        ));
    }
    if let Some(crate::config::LocalKind::Csi(spec)) = &class.local
        && matches!(
            spec.source(),
            Some(crate::config::csi::CsiDriverSource::Endpoint(_))
        )
        && (kind == Kind::PluginKill || class.upgrade.as_ref().is_some_and(|u| u.command.is_none()))
    {
        return Some(
            "the CSI driver at `endpoint` is not pvcheck's to stop and start (give `local.csi.command`)"
                .into(),
        );
    }
    None
}

/// Whether the volume had room for the stream (the agent's `full` event: it writes only what
/// fits, and says when nothing more does).
#[derive(Debug, PartialEq)]
enum Room {
    Enough,
    /// Full before the first record: nothing of the driver was tested under writes.
    NoneAtAll,
    /// Full after this many records.
    FilledAfter(u64),
    /// Room, yet no record was acknowledged: the volume took no durable write.
    NoWrite,
}

fn room(seen: &Seen) -> Room {
    let acked: u64 = seen.streams.iter().map(|s| s.records).sum();
    let full_at = seen
        .all_events()
        .find(|e| e["kind"] == "full")
        .map(|e| e["records"].as_u64().unwrap_or(0));
    match (acked, full_at) {
        (0, Some(_)) => Room::NoneAtAll,
        (0, None) => Room::NoWrite,
        (_, Some(n)) => Room::FilledAfter(n),
        (_, None) => Room::Enough,
    }
}

/// A volume with no room for the first record: the check's own problem (`setup`), not the
/// driver's; an upgrade under a stream that never wrote proves nothing either way.
fn no_room() -> Failure {
    Failure::setup(
        "the volume had no room for the live stream's first record (the agent found it full before writing): nothing was tested; free space on the volume (or give the class a larger size) and run the check again",
    )
}

/// A running `live-stream`.
struct Stream {
    volume: String,
    node: Option<String>,
    child: Box<dyn AgentProcess>,
    out: PathBuf,
    /// The agent's `--dir` under the mount (`live-<n>`).
    dir: String,
    spawned: Instant,
    n: usize,
}

/// What a stopped stream said.
#[derive(Default)]
struct Streamed {
    /// The stream's directory under the mount (`live-<n>`): a recreated pod mounts elsewhere.
    dir: String,
    /// The volume it wrote on (one per node where agents write on several nodes).
    volume: String,
    /// The node its pod ran on, where the platform has nodes.
    node: Option<String>,
    verified_in_place: u64,
    verified_after_recreate: u64,
    /// Header and record lines only: `verify --acks` input.
    acks: PathBuf,
    records: u64,
    events: Vec<Value>,
    started_ms: u64,
    stopped_ms: u64,
}

fn start(ctx: &CheckCtx, vol: &dyn Volume, pod: &mut dyn Pod, n: usize) -> Result<Stream, Failure> {
    let sub = format!("live-{n}");
    let dir = pod.data_dir().join(&sub).display().to_string();
    let call = AgentCall::new(
        [
            "live-stream".to_string(),
            "--dir".into(),
            dir.clone(),
            "--mkdir".into(),
            "--seed".into(),
            ctx.seed().wrapping_add(n as u64).to_string(),
            "--volume-id".into(),
            CheckCtx::agent_volume_id(vol).to_string(),
            // Far longer than the check: the harness stops it.
            "--duration".into(),
            "1h".into(),
        ],
        ctx.agent_timeout() + Duration::from_secs(3600),
    );
    let out = ctx.work_dir.join(format!("live-{n}.out"));
    let child = pod.spawn_agent(&call, &out)?;
    Ok(Stream {
        volume: vol.id().to_string(),
        node: pod.node().map(str::to_string),
        child,
        out,
        dir: sub,
        spawned: Instant::now(),
        n,
    })
}

/// A stream's output as far as it goes: the acks header and record lines (`verify --acks`
/// input), how many records, and the events. Only whole lines count: a last line without its
/// newline was cut (by the kill, or is still being written).
struct Output {
    acks: String,
    records: u64,
    events: Vec<Value>,
}

fn read_output(path: &Path) -> Output {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut o = Output {
        acks: String::new(),
        records: 0,
        events: Vec::new(),
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            break;
        }
        if i == 0 {
            o.acks.push_str(line);
        } else if line.starts_with("{\"record\"") {
            o.acks.push_str(line);
            o.records += 1;
        } else if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(e) = v.get("event")
        {
            o.events.push(e.clone());
        }
    }
    o
}

/// What a running stream's output shows so far: acknowledged records, and whether it reported
/// anything that explains their absence (an event other than its start or a slow operation).
fn so_far(out: &Path) -> (u64, bool) {
    let o = read_output(out);
    let said = o
        .events
        .iter()
        .any(|e| e["kind"] != "start" && e["kind"] != "slow");
    (o.records, said)
}

/// Waits, before a window, until every fresh stream of `streams` has acknowledged a record or
/// said why it cannot (its errors, stall or full volume are then judged as usual), then lets
/// them write on for what is left of [`LEAD`] (at least a second). A window opened before the
/// first acknowledgement tests nothing: a driver that drops acknowledged writes at a restart
/// would pass it whenever the agent's first write is slow (a pod slow to start, a busy disk).
fn lead_in(streams: &[&Stream]) -> Result<(), Failure> {
    let began = Instant::now();
    for s in streams {
        loop {
            let (records, said) = so_far(&s.out);
            if records > 0 || said {
                break;
            }
            if s.spawned.elapsed() > FIRST_ACK {
                return Err(Failure::setup(format!(
                    "the live stream{} acknowledged no record and reported nothing within {} s of its start: no window was opened, nothing of the driver was tested (its output: {})",
                    s.node
                        .as_deref()
                        .map(|n| format!(" on node {n}"))
                        .unwrap_or_default(),
                    FIRST_ACK.as_secs(),
                    s.out.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(
        LEAD.saturating_sub(began.elapsed())
            .max(Duration::from_secs(1)),
    );
    Ok(())
}

/// [`lead_in`] for the streams from `fresh` on; when it fails, every stream is stopped
/// ([`abandon`]).
fn lead_in_lanes(
    ctx: &CheckCtx,
    streams: &mut Vec<Stream>,
    fresh: usize,
    seen: &mut Seen,
) -> Result<(), Failure> {
    lead_in(&streams[fresh..].iter().collect::<Vec<_>>())
        .map_err(|f| abandon(ctx, std::mem::take(streams), seen, f))
}

/// Stops `streams` after a failed [`lead_in`], keeping their figures in `seen`: the failure is
/// the stream's own when one ended by itself (its exit and stderr say more), else `f`.
fn abandon(ctx: &CheckCtx, streams: Vec<Stream>, seen: &mut Seen, f: Failure) -> Failure {
    let mut first = None;
    for s in streams {
        match stop(ctx, s) {
            Ok(s) => seen.streams.push(s),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    if seen.t0 == 0 {
        seen.t0 = seen.streams.iter().map(|s| s.started_ms).min().unwrap_or(0);
    }
    first.unwrap_or(f)
}

fn stop(ctx: &CheckCtx, mut s: Stream) -> Result<Streamed, Failure> {
    let stopped_ms = crate::sys::unix_ms();
    s.child.kill()?;
    let out = s.child.wait(Duration::from_secs(30))?;
    ctx.agent_clock.span(s.spawned, Instant::now());
    let Output {
        acks,
        records,
        events,
    } = read_output(&s.out);
    if out.signal != Some(9) {
        return Err(Failure::setup(format!(
            "the live stream ended before it was stopped ({}): {}\ncommand: {}",
            out.status(),
            out.stderr_line(),
            out.command
        )));
    }
    let started_ms = events
        .iter()
        .find(|e| e["kind"] == "start")
        .and_then(|e| e["at_ms"].as_u64())
        .ok_or_else(|| {
            Failure::setup(format!(
                "the live stream never started writing: {}\ncommand: {}",
                out.stderr_line(),
                out.command
            ))
        })?;
    let path = ctx.work_dir.join(format!("acks-{}.txt", s.n));
    std::fs::write(&path, acks)
        .map_err(|e| Failure::new(format!("saving {}: {e}", path.display())))?;
    Ok(Streamed {
        dir: s.dir,
        volume: s.volume,
        node: s.node,
        acks: path,
        records,
        events,
        started_ms,
        stopped_ms,
        ..Streamed::default()
    })
}

/// Everything the check saw, for the verdict and the metrics.
#[derive(Default)]
struct Seen {
    kind: Option<Kind>,
    drain: bool,
    /// When the first stream started (Unix ms): the metrics' times are relative to it.
    t0: u64,
    windows: Vec<DriverWindow>,
    streams: Vec<Streamed>,
    verified_in_place: u64,
    verified_after_recreate: u64,
    /// Failures found along the way that do not stop the check (the verdict picks).
    upgrade_problems: Vec<String>,
    data_problems: Vec<Failure>,
    mounts: Vec<Value>,
    /// What the platform could not check (the mount counts on Kubernetes): a warning of the
    /// trial, and in the metrics.
    not_checked: Vec<String>,
    usable_after: Option<bool>,
    /// How many agents wrote, and why only one where the platform has more nodes than that.
    agents_note: Option<String>,
    /// Per drained step: the nodes cordoned and the pods evicted (`upgrade.drain`).
    drained: Vec<Value>,
    /// Where each extra volume's pod was recreated (volume → node), for the metrics.
    recreated_on: Vec<(String, Option<String>)>,
}

fn s_of(t0: u64, ms: u64) -> f64 {
    (ms as f64 - t0 as f64) / 1000.0
}

/// `Transport endpoint is not connected (os error 107)` → `transport endpoint is not connected`.
fn plain(message: &str) -> String {
    let m = message.split(" (os error").next().unwrap_or(message).trim();
    let mut c = m.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Seen {
    /// The window an event at `ms` belongs to: the last one begun before it, else the first.
    fn window_of(&self, ms: u64) -> Option<&DriverWindow> {
        self.windows
            .iter()
            .rev()
            .find(|w| w.began_ms <= ms)
            .or(self.windows.first())
    }

    /// [`Seen::window_of`] among the windows of `node` (the agent's): where the upgrade was
    /// followed node by node, an event belongs to its own node's window.
    fn window_of_node(&self, node: Option<&str>, ms: u64) -> Option<&DriverWindow> {
        let mine: Vec<&DriverWindow> = self
            .windows
            .iter()
            .filter(|w| node.is_some() && w.node.as_deref() == node)
            .collect();
        if mine.is_empty() || self.windows.iter().all(|w| w.node.as_deref() == node) {
            return self.window_of(ms);
        }
        mine.iter()
            .rev()
            .find(|w| w.began_ms <= ms)
            .or(mine.first())
            .copied()
    }

    /// The streams' nodes, each once, in order.
    fn stream_nodes(&self) -> Vec<Option<String>> {
        let mut v: Vec<Option<String>> = Vec::new();
        for s in &self.streams {
            if !v.contains(&s.node) {
                v.push(s.node.clone());
            }
        }
        v
    }

    fn describe_window(&self, w: &DriverWindow) -> String {
        let mut what = match self.kind {
            // A driver with no process of its own (flexVolume): what it left for the volume.
            Some(Kind::PluginKill) if w.report["killed"].is_array() => format!(
                "the SIGKILL of what the driver left running for the volume ({})",
                w.report["killed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("pid {}", p["pid"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(Kind::PluginKill) if w.what == "SIGKILL" => {
                "the node plugin's SIGKILL and restart".to_string()
            }
            Some(Kind::PluginKill) => format!("the node plugin's restart ({})", w.what),
            Some(Kind::KubeletRestart) | Some(Kind::PodDeletedWhileKubeletDown) => {
                format!("the {}", w.what)
            }
            _ => format!("the upgrade (step {})", w.what),
        };
        if let Some(node) = &w.node {
            what.push_str(&format!(" on node {node}"));
        }
        if self.kind.is_some_and(Kind::is_kubelet) {
            let after = |ms: u64| ms.saturating_sub(w.began_ms) as f64 / 1000.0;
            return format!(
                "{what}, begun {:.1} s into the stream: kubelet stopped after {:.1} s, back (its Lease renewed) after {:.1} s",
                s_of(self.t0, w.began_ms),
                after(w.old_stopped_ms.unwrap_or(w.began_ms)),
                after(w.new_answered_ms)
            );
        }
        let stopped = w
            .old_stopped_ms
            .map(|s| {
                format!(
                    "old driver gone after {:.1} s, ",
                    s.saturating_sub(w.began_ms) as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        format!(
            "{what}, begun {:.1} s into the stream: {stopped}new driver answered after {:.1} s",
            s_of(self.t0, w.began_ms),
            w.new_answered_ms.saturating_sub(w.began_ms) as f64 / 1000.0
        )
    }

    fn all_events(&self) -> impl Iterator<Item = &Value> {
        self.streams.iter().flat_map(|s| s.events.iter())
    }

    /// Errors by errno: count, first and last time, operations, the first message.
    fn errors_by_kind(&self) -> BTreeMap<String, (u64, u64, u64, Vec<String>, String)> {
        errors_by_kind(self.all_events(), None)
    }

    /// [`Seen::errors_by_kind`] of the agent on `node` only.
    fn errors_of_node(
        &self,
        node: Option<&str>,
    ) -> BTreeMap<String, (u64, u64, u64, Vec<String>, String)> {
        errors_by_kind(
            self.streams
                .iter()
                .filter(|s| s.node.as_deref() == node)
                .flat_map(|s| s.events.iter()),
            None,
        )
    }

    fn longest_stall(&self) -> (f64, String, u64) {
        longest_stall(self.streams.iter())
    }
}

/// Errors by errno among `events` (within `window`, Unix ms from–to, when given): count, first
/// and last time, operations, the first message.
fn errors_by_kind<'a>(
    events: impl Iterator<Item = &'a Value>,
    window: Option<(u64, u64)>,
) -> BTreeMap<String, (u64, u64, u64, Vec<String>, String)> {
    {
        let mut m: BTreeMap<String, (u64, u64, u64, Vec<String>, String)> = BTreeMap::new();
        for e in events {
            let (errno, op, message) = match e["kind"].as_str() {
                Some("error") => (
                    e["errno"].as_str().unwrap_or("?").to_string(),
                    e["op"].as_str().unwrap_or("?").to_string(),
                    plain(e["message"].as_str().unwrap_or("")),
                ),
                Some("mount") if e["to"]["read_only"] == true && e["from"]["read_only"] != true => {
                    (
                        "EROFS".into(),
                        "mountinfo".into(),
                        format!(
                            "the mount at {} turned read-only",
                            e["to"]["point"].as_str().unwrap_or("?")
                        ),
                    )
                }
                _ => continue,
            };
            let at = e["at_ms"].as_u64().unwrap_or(0);
            if let Some((from, to)) = window
                && (at < from || at > to)
            {
                continue;
            }
            let entry = m
                .entry(errno)
                .or_insert_with(|| (0, at, at, Vec::new(), message));
            entry.0 += 1;
            entry.1 = entry.1.min(at);
            entry.2 = entry.2.max(at);
            if !entry.3.contains(&op) {
                entry.3.push(op);
            }
        }
        m
    }
}

/// The longest operation of `streams`: seconds, which, when it began (Unix ms).
fn longest_stall<'a>(streams: impl Iterator<Item = &'a Streamed>) -> (f64, String, u64) {
    {
        let mut best = (0.0, String::new(), 0);
        for s in streams {
            for e in &s.events {
                let (secs, since) = match e["kind"].as_str() {
                    Some("slow") => (
                        e["ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        e["at_ms"].as_u64().unwrap_or(0),
                    ),
                    // Still running when the stream was stopped, unless it finished (a `slow`
                    // event for it follows).
                    Some("stall") | Some("hang") => {
                        let since = e["since_ms"].as_u64().unwrap_or(0);
                        let finished = s
                            .events
                            .iter()
                            .any(|x| x["kind"] == "slow" && x["at_ms"].as_u64() == Some(since));
                        if finished {
                            continue;
                        }
                        (s.stopped_ms.saturating_sub(since) as f64 / 1000.0, since)
                    }
                    _ => continue,
                };
                if secs > best.0 {
                    best = (secs, e["op"].as_str().unwrap_or("?").to_string(), since);
                }
            }
        }
        best
    }
}

/// Errors by kind as the metrics show them.
fn errors_json(
    t0: u64,
    m: BTreeMap<String, (u64, u64, u64, Vec<String>, String)>,
) -> serde_json::Map<String, Value> {
    m.into_iter()
        .map(|(k, (n, first, last, ops, msg))| {
            (
                k,
                json!({"count": n, "first_s": s_of(t0, first), "last_s": s_of(t0, last), "ops": ops, "message": msg}),
            )
        })
        .collect()
}

impl Seen {
    /// What the agent on the window's node saw: errors by kind in the window and in its whole
    /// stream, its longest stall, its records.
    fn agent_of_window(&self, w: &DriverWindow) -> Value {
        let node = w.node.as_deref();
        let mine: Vec<&Streamed> = self
            .streams
            .iter()
            .filter(|s| self.streams.iter().all(|x| x.node == s.node) || s.node.as_deref() == node)
            .collect();
        let in_window = errors_by_kind(
            mine.iter().flat_map(|s| s.events.iter()),
            Some((w.began_ms, w.new_answered_ms)),
        );
        let (stall, op, since) = longest_stall(mine.iter().copied());
        json!({
            "volumes": mine.iter().map(|s| s.volume.clone()).collect::<Vec<_>>(),
            "errors_in_window": errors_json(self.t0, in_window),
            "errors_by_kind": errors_json(self.t0, errors_by_kind(mine.iter().flat_map(|s| s.events.iter()), None)),
            "longest_stall_seconds": stall,
            "longest_stall_op": (!op.is_empty()).then_some(op),
            "longest_stall_began_s": (since > 0).then(|| s_of(self.t0, since)),
            "records_acknowledged": mine.iter().map(|s| s.records).sum::<u64>(),
            "records_verified_in_place": mine.iter().map(|s| s.verified_in_place).sum::<u64>(),
            "records_verified_after_recreate": mine.iter().map(|s| s.verified_after_recreate).sum::<u64>(),
        })
    }

    fn metrics(&self) -> Value {
        let t0 = self.t0;
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|w| {
                json!({
                    "what": w.what,
                    "node": w.node,
                    "began_s": s_of(t0, w.began_ms),
                    "old_driver_gone_s": w.old_stopped_ms.map(|m| s_of(t0, m)),
                    "new_driver_answered_s": s_of(t0, w.new_answered_ms),
                    "seconds": w.new_answered_ms.saturating_sub(w.began_ms) as f64 / 1000.0,
                    "agent": self.agent_of_window(w),
                    "report": w.report,
                })
            })
            .collect();
        let errors = errors_json(t0, self.errors_by_kind());
        let (stall, op, _) = self.longest_stall();
        let agents: Vec<Value> = self
            .streams
            .iter()
            .map(|s| {
                json!({
                    "node": s.node,
                    "volume": s.volume,
                    "dir": s.dir,
                    "records_acknowledged": s.records,
                    "records_verified_in_place": s.verified_in_place,
                    "records_verified_after_recreate": s.verified_after_recreate,
                    "recreated_on": self.recreated_on.iter().find(|(v, _)| *v == s.volume).map(|(_, n)| n),
                })
            })
            .collect();
        let mount_changes: Vec<&Value> =
            self.all_events().filter(|e| e["kind"] == "mount").collect();
        let mismatches: Vec<&Value> = self
            .all_events()
            .filter(|e| e["kind"] == "mismatch")
            .collect();
        let end = self
            .streams
            .iter()
            .map(|s| s.stopped_ms)
            .max()
            .unwrap_or(t0);
        json!({
            "check": self.kind.map(Kind::name),
            "drain": self.drain,
            "drained": self.drained,
            "windows": windows,
            "errors_by_kind": errors,
            "longest_stall_seconds": stall,
            "longest_stall_op": (!op.is_empty()).then_some(op),
            "stall_limit_seconds": STALL_S,
            "hang_limit_seconds": HANG_S,
            "records_acknowledged": self.streams.iter().map(|s| s.records).sum::<u64>(),
            "records_verified_in_place": self.verified_in_place,
            "records_verified_after_recreate": self.verified_after_recreate,
            "stream_seconds": s_of(t0, end),
            "mount_changes": mount_changes,
            "probe_mismatches": mismatches,
            "mounts": self.mounts,
            "not_checked": self.not_checked,
            "usable_after": self.usable_after,
            "agents": agents,
            "agents_note": self.agents_note,
        })
    }

    /// The `upgrade` failure's lines: each errno with when it came in its window, stalls,
    /// what else went wrong.
    fn trouble(&self) -> Vec<String> {
        let mut lines = Vec::new();
        // Per agent (per node where agents wrote on several), each in its own node's window.
        for node in self.stream_nodes() {
            let node = node.as_deref();
            for (errno, (n, first, last, ops, msg)) in self.errors_of_node(node) {
                let where_ = match self.window_of_node(node, first) {
                    Some(w) => {
                        let after = first as f64 / 1000.0 - w.began_ms as f64 / 1000.0;
                        let when = if after >= 0.0 {
                            format!("after {after:.1} s of")
                        } else {
                            format!("{:.1} s before", -after)
                        };
                        format!("{when} {}", self.describe_window(w))
                    }
                    None => format!("{:.1} s into the stream", s_of(self.t0, first)),
                };
                lines.push(format!(
                    "{where_}, the mount answered {errno}: {msg} ({n}× in {}, until {:.1} s into the stream)",
                    ops.join("/"),
                    s_of(self.t0, last)
                ));
            }
            let (stall, op, since) =
                longest_stall(self.streams.iter().filter(|s| s.node.as_deref() == node));
            if stall > STALL_S {
                let word = if stall > HANG_S { "hang" } else { "stall" };
                let w = self
                    .window_of_node(node, since)
                    .map(|w| format!(" ({})", self.describe_window(w)))
                    .unwrap_or_default();
                lines.push(format!(
                    "a {op} took {stall:.1} s from {:.1} s into the stream: a {word} (over {} s){w}",
                    s_of(self.t0, since),
                    if word == "hang" { HANG_S } else { STALL_S }
                ));
            }
        }
        let mount_events = self.streams.iter().flat_map(|s| {
            s.events
                .iter()
                .filter(|e| e["kind"] == "mount")
                .map(move |e| (s.node.as_deref(), e))
        });
        for (node, e) in mount_events {
            let (from, to) = (&e["from"], &e["to"]);
            if from["device"] == to["device"] && from["id"] == to["id"] {
                continue; // a flip to read-only only: counted as EROFS above
            }
            let at = e["at_ms"].as_u64().unwrap_or(0);
            let when = match self.window_of_node(node, at) {
                Some(w) => format!("during {}", self.describe_window(w)),
                None => format!("{:.1} s into the stream", s_of(self.t0, at)),
            };
            lines.push(format!(
                "{when}, the mount at {} was replaced: device {} (mount {}) became device {} (mount {}); files a pod opened before refer to the old mount, and what they write after it is not what the pod sees through the new one",
                to["point"].as_str().unwrap_or("?"),
                from["device"].as_str().unwrap_or("?"),
                from["id"].as_str().unwrap_or("?"),
                to["device"].as_str().unwrap_or("?"),
                to["id"].as_str().unwrap_or("?"),
            ));
        }
        lines.extend(self.upgrade_problems.iter().cloned());
        lines
    }
}

/// Verifies each stream's acknowledged records through the pod's mount now; returns the
/// records verified. Damage is kept in `seen.data_problems`; a verify that cannot run is
/// returned as the reason.
fn verify_all(
    ctx: &CheckCtx,
    vol: &dyn Volume,
    pod: &mut dyn Pod,
    seen: &mut Seen,
    when: &str,
    after_recreate: bool,
) -> Result<u64, String> {
    let mut n = 0;
    let mut targets = Vec::new();
    for (i, s) in seen.streams.iter().enumerate() {
        // The streams of this volume (one per node where agents wrote on several).
        if s.volume == vol.id() || s.volume.is_empty() {
            targets.push((i, s.dir.clone(), s.acks.clone(), s.records, s.node.clone()));
        }
    }
    for (i, dir, acks, records, node) in targets {
        let w = if seen.windows.is_empty() {
            String::new()
        } else {
            let mine: Vec<&DriverWindow> = seen
                .windows
                .iter()
                .filter(|w| node.is_some() && w.node == node)
                .collect();
            let ws: Vec<String> = if mine.is_empty() {
                seen.windows
                    .iter()
                    .map(|w| seen.describe_window(w))
                    .collect()
            } else {
                mine.iter().map(|w| seen.describe_window(w)).collect()
            };
            let agent = match (&node, seen.stream_nodes().len() > 1) {
                (Some(n), true) => format!("the agent on node {n}; "),
                _ => String::new(),
            };
            format!(" ({agent}window: {})", ws.join("; "))
        };
        let target = pod.data_dir().join(&dir).display().to_string();
        match integrity::verify_target(
            ctx,
            vol,
            pod,
            ["--dir".into(), target],
            Expect::Acks(&acks),
            when,
        ) {
            Ok(_) => {
                n += records;
                let s = &mut seen.streams[i];
                if after_recreate {
                    s.verified_after_recreate = records;
                } else {
                    s.verified_in_place = records;
                }
            }
            Err(mut f) if f.category == FailureCategory::Data => {
                // The first line says what and where; the window follows it.
                let (first, rest) = f.message.split_once('\n').unwrap_or((&f.message, ""));
                // Records are 4 KiB blocks of the log: the first damaged offset names the record.
                let record = f.details["damage"][0]["offset"]
                    .as_u64()
                    .map(|o| {
                        format!(
                            "\n  first damaged acknowledged record: {} ({dir}/{} offset {o})",
                            o / 4096,
                            f.details["damage"][0]["file"].as_str().unwrap_or("?")
                        )
                    })
                    .unwrap_or_default();
                f.message = format!("{first}{w}{record}\n{rest}");
                seen.data_problems.push(f);
                return Ok(n);
            }
            Err(f) => return Err(f.message.lines().next().unwrap_or("").to_string()),
        }
    }
    Ok(n)
}

/// What the verify over the mount the driver's replacement left under the pod is called.
const SURVIVED: &str = "verify of acknowledged records over the surviving mount";

/// How long after its restart a kubelet has to call NodeStageVolume and NodePublishVolume
/// again for the running pods (it does once the driver registered with it again, seconds
/// after its Lease is renewed): the mount counts are read until then, or until one is off.
const SETTLE: Duration = Duration::from_secs(10);

/// The volume's mount counts, or `None` where the platform cannot read them (the result
/// says what was not checked: not a pass).
fn read_mounts(
    vol: &dyn Volume,
    seen: &mut Seen,
    when: &str,
) -> Result<Option<Vec<crate::platform::MountCount>>, Failure> {
    match vol.mount_counts() {
        Ok(c) => Ok(Some(c)),
        Err(crate::platform::PlatformError::Unsupported(why)) => {
            if !seen.not_checked.contains(&why) {
                seen.not_checked.push(why);
            }
            Ok(None)
        }
        Err(e) => Err(Failure::from(e).context(when)),
    }
}

/// The mount counts right after a restart, read while every pod of the check still runs:
/// the teardown of one pod's stacked mount unmounts the stack of every other mount of the
/// volume in its peer group too, which would hide it. After a kubelet restart, read again
/// every second until [`SETTLE`] has passed since `window_end` or a count is off.
fn mounts_after_restart(
    vol: &dyn Volume,
    seen: &mut Seen,
    kind: Kind,
    window_end: Instant,
) -> Result<(), Failure> {
    let when = "after the restart";
    loop {
        let Some(counts) = read_mounts(vol, seen, when)? else {
            return Ok(());
        };
        let off = counts.iter().any(|c| c.found != c.expected);
        if off || kind != Kind::KubeletRestart || window_end.elapsed() >= SETTLE {
            record_mounts(seen, when, counts);
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Mounts staged/published exactly once, no orphan: else a problem line.
fn check_mounts(vol: &dyn Volume, seen: &mut Seen, when: &str) -> Result<(), Failure> {
    if let Some(counts) = read_mounts(vol, seen, when)? {
        record_mounts(seen, when, counts);
    }
    Ok(())
}

/// Records one reading of the mount counts; each count that is off is a problem line.
fn record_mounts(seen: &mut Seen, when: &str, counts: Vec<crate::platform::MountCount>) {
    seen.mounts.push(json!({"when": when, "counts": counts}));
    for c in &counts {
        if c.found != c.expected {
            seen.upgrade_problems.push(format!(
                "{when}: {} mount(s) at the {} path {} (expected {}): {}",
                c.found,
                c.role,
                c.path,
                c.expected,
                if c.found > c.expected {
                    "stacked or orphaned mounts"
                } else {
                    "the volume is not mounted there"
                }
            ));
        }
    }
}

/// A small write and its verify through the pod's mount: the volume is still usable.
fn usable(ctx: &CheckCtx, vol: &dyn Volume, pod: &mut dyn Pod, seen: &mut Seen) {
    let dir = pod
        .data_dir()
        .join("after-disruption")
        .display()
        .to_string();
    let dataset = integrity::Dataset {
        target: ["--dir".into(), dir.clone()],
        seed: ctx.seed() ^ 0x5a5a,
        agent_volume_id: CheckCtx::agent_volume_id(vol),
        size: 1 << 20,
        mkdir: true,
    };
    let ledger = ctx.work_dir.join("ledger-after.json");
    let r = integrity::write_dataset(ctx, pod, &dataset, &ledger, "write after the restart")
        .and_then(|_| {
            integrity::verify_target(
                ctx,
                vol,
                pod,
                ["--dir".into(), dir],
                Expect::Ledger(&ledger),
                "read back after the restart",
            )
        });
    match r {
        Ok(_) => seen.usable_after = Some(true),
        Err(f) if f.category == FailureCategory::Data => {
            seen.usable_after = Some(false);
            seen.data_problems.push(f);
        }
        Err(f) => {
            seen.usable_after = Some(false);
            seen.upgrade_problems.push(format!(
                "the volume is not usable after the restart: {}",
                f.message.lines().next().unwrap_or("")
            ));
        }
    }
}

/// Probe read-backs that found another record: data damage seen live.
fn probe_damage(seen: &Seen) -> Option<Failure> {
    let bad: Vec<&Value> = seen
        .all_events()
        .filter(|e| e["kind"] == "mismatch")
        .collect();
    let first = bad.first()?;
    let at = first["at_ms"].as_u64().unwrap_or(0);
    let w = seen
        .window_of(at)
        .map(|w| format!(" ({})", seen.describe_window(w)))
        .unwrap_or_default();
    Some(
        Failure::data(format!(
            "acknowledged record {} (file {}, offset {}) read back {} at {:.1} s into the stream{w}; {} such read-back(s)",
            first["record"],
            first["file"].as_str().unwrap_or("?"),
            first["offset"],
            if first["zeroed"] == true {
                "zeroed".to_string()
            } else if first["found"].is_null() {
                "as something that is no record".to_string()
            } else {
                format!("as another block {}", first["found"])
            },
            s_of(seen.t0, at),
            bad.len()
        ))
        .with_details(json!({"probe_mismatches": bad})),
    )
}

/// Acknowledged records found damaged (by a verify, else by a probe's read-back): the
/// failure that outranks every other.
fn damage(seen: &Seen) -> Option<Failure> {
    if let Some(f) = seen.data_problems.first() {
        let mut f = f.clone();
        if seen.data_problems.len() > 1 {
            f.message.push_str(&format!(
                "\n(and {} more damaged verify(ies))",
                seen.data_problems.len() - 1
            ));
        }
        return Some(f);
    }
    probe_damage(seen)
}

/// A check that ended early (a replacement, a recreate or a mount count that failed) after
/// damage was already found: `data` comes first, always, and the other failure follows it.
fn damage_first(seen: &Seen, f: Failure) -> Failure {
    if f.category == FailureCategory::Data {
        return f;
    }
    match damage(seen) {
        Some(mut d) => {
            d.message.push_str(&format!(
                "\n(the check then stopped: {})",
                f.message.lines().next().unwrap_or("")
            ));
            d
        }
        None => f,
    }
}

/// After a driver replacement that failed: the acknowledged records are still verified over
/// the mounts that survived (`checked`, one result per agent), so that a failed upgrade that
/// also lost data fails `data` ([`run`] puts [`damage_first`] over every early end), and one
/// that lost nothing says so.
fn failed_replacement(
    seen: &mut Seen,
    mut f: Failure,
    checked: Vec<Result<u64, String>>,
) -> Failure {
    let verified: u64 = checked.iter().filter_map(|r| r.as_ref().ok()).sum();
    seen.verified_in_place = verified;
    let acked: u64 = seen.streams.iter().map(|s| s.records).sum();
    let not: Vec<&String> = checked.iter().filter_map(|r| r.as_ref().err()).collect();
    if damage(seen).is_none() {
        f.message.push_str(&if acked == 0 && not.is_empty() {
            "\n(no record had been acknowledged before the replacement failed)".to_string()
        } else if not.is_empty() {
            format!(
                "\n(all {acked} acknowledged record(s) were verified over the mount(s) that survived the failed replacement: none was lost)"
            )
        } else {
            format!(
                "\n({verified} of {acked} acknowledged record(s) verified over the mount(s) that survived the failed replacement; not verified: {})",
                not.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
            )
        });
    }
    f
}

/// The verdict of what was seen.
fn verdict(seen: &Seen) -> Result<Verdict, Failure> {
    if let Some(f) = damage(seen) {
        return Err(f);
    }
    let trouble = seen.trouble();
    if !trouble.is_empty() {
        let mut msg = trouble.join("\n");
        if seen.kind == Some(Kind::LiveUpgrade) && !seen.drain {
            msg.push_str("\n(the upgrade rolled while the agent wrote; a driver whose documented upgrade stops its workloads first declares `upgrade.drain: true`)");
        }
        return Err(Failure::new(msg)
            .category(FailureCategory::Upgrade)
            .with_details(seen.metrics()));
    }
    Ok(Verdict::Passed)
}

/// `integrity::live-upgrade`.
pub fn live_upgrade_check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    run(ctx, Kind::LiveUpgrade)
}

/// `disruption::node-plugin-kill`.
pub fn plugin_kill_check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    run(ctx, Kind::PluginKill)
}

/// `disruption::kubelet-restart`.
pub fn kubelet_restart_check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    run(ctx, Kind::KubeletRestart)
}

/// `disruption::pod-deleted-while-kubelet-down`.
pub fn pod_deleted_while_kubelet_down_check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    run(ctx, Kind::PodDeletedWhileKubeletDown)
}

fn run(ctx: &CheckCtx, kind: Kind) -> Result<Verdict, Failure> {
    if let Some(why) = unsupported(kind, &ctx.class, ctx.platform.as_ref()) {
        return Ok(Verdict::Ignored(why));
    }
    let drain = kind == Kind::LiveUpgrade && ctx.class.upgrade.as_ref().is_some_and(|u| u.drain);
    ctx.with_volume("", 64 << 20, |vol| {
        let steps = vol.upgrade_steps();
        if kind == Kind::LiveUpgrade && steps.is_empty() {
            return Ok(Verdict::Ignored("the class defines no upgrade step".into()));
        }
        let mut seen = Seen {
            kind: Some(kind),
            drain,
            ..Seen::default()
        };
        // On a platform with nodes, the upgrade rolls node by node, and the node plugin is
        // killed on every node: one agent per node.
        let per_node = matches!(kind, Kind::LiveUpgrade | Kind::PluginKill);
        let r = if per_node && ctx.platform.name() == "kubernetes" {
            roll_nodes(ctx, vol, kind, &steps, &mut seen)
        } else {
            roll(ctx, vol, kind, &steps, &mut seen, None)
        };
        ctx.metric("live", seen.metrics());
        for why in &seen.not_checked {
            ctx.warn(why.clone());
        }
        if let Some(why) = r.map_err(|f| damage_first(&seen, f))? {
            // The platform found nothing it may replace (no node plugin pod of the driver on
            // the node, or the cluster refused the deletion): nothing was checked.
            return Ok(Verdict::Ignored(why));
        }
        verdict(&seen)
    })
}

fn roll(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    kind: Kind,
    steps: &[crate::platform::UpgradeStep],
    seen: &mut Seen,
    started: Option<Box<dyn Pod>>,
) -> Result<Option<String>, Failure> {
    let mut pod = match started {
        Some(p) => p,
        None => {
            let p = vol.start_pod()?;
            ctx.noticed(vol);
            p
        }
    };
    let mut n = 1;
    let mut stream = start(ctx, vol, pod.as_mut(), n)?;
    let mut window_end = Instant::now();
    if let Err(f) = lead_in(&[&stream]) {
        return Err(abandon(ctx, vec![stream], seen, f));
    }
    let replace = |vol: &mut dyn Volume, step: Option<&crate::platform::UpgradeStep>| {
        let r = match (step, kind) {
            (Some(s), _) => vol.upgrade_live(s),
            (None, Kind::KubeletRestart) => vol.disrupt_node_agent(NodeAgentDisruption::Restart),
            (None, Kind::PodDeletedWhileKubeletDown) => {
                vol.disrupt_node_agent(NodeAgentDisruption::PodsDeletedWhileDown)
            }
            (None, _) => vol.kill_driver(),
        };
        ctx.noticed(vol);
        if let Err(crate::platform::PlatformError::Unsupported(why)) = &r {
            return Err(Err(why.clone()));
        }
        r.map_err(|e| {
            let what = match step {
                Some(s) => format!("upgrade step {:?} while the agent wrote", s.name),
                None if kind.is_kubelet() => {
                    format!(
                        "the {} while the agent wrote",
                        kind.name().replace('-', " ")
                    )
                }
                None => "the node plugin's SIGKILL and restart".to_string(),
            };
            let f = Failure::from(e).context(&what);
            if kind.is_kubelet() {
                // The class's commands or the cluster failed, not the driver.
                return f;
            }
            // The driver did not come back: the upgrade failed, not the harness.
            match f.category {
                FailureCategory::Setup | FailureCategory::Protocol => {
                    f.category(FailureCategory::Upgrade)
                }
                _ => f,
            }
        })
        .map_err(Ok)
    };
    let rounds: Vec<Option<&crate::platform::UpgradeStep>> = match kind {
        Kind::LiveUpgrade => steps.iter().map(Some).collect(),
        _ => vec![None],
    };
    for step in rounds {
        if seen.drain {
            // What such drivers document: the workload leaves, the plugin is replaced, the
            // workload comes back ([`drained_step`] with this one pod).
            let nodes: Vec<String> = pod.node().map(str::to_string).into_iter().collect();
            let mut pods = vec![pod];
            let mut streams = vec![stream];
            let (ws, why) = drained_step(
                ctx,
                vol,
                &mut [],
                &mut pods,
                &nodes,
                step,
                seen,
                &mut streams,
            )?;
            if why.is_some() {
                return Ok(why);
            }
            seen.windows.extend(ws);
            pod = pods
                .pop()
                .ok_or_else(|| Failure::setup("the drained upgrade brought no pod back"))?;
            n += 1;
            stream = start(ctx, vol, pod.as_mut(), n)?;
            if let Err(f) = lead_in(&[&stream]) {
                return Err(abandon(ctx, vec![stream], seen, f));
            }
            continue;
        } else {
            match replace(vol, step) {
                Ok(w) => {
                    window_end = Instant::now();
                    // What the API showed across the kubelet's restart: findings.
                    if let Some(ps) = w.report["problems"].as_array() {
                        seen.upgrade_problems
                            .extend(ps.iter().filter_map(|p| p.as_str().map(str::to_string)));
                    }
                    seen.windows.push(w)
                }
                Err(e) => {
                    // Keep what the stream saw up to here in the metrics.
                    let stopped = stop(ctx, stream).map(|s| {
                        seen.t0 = if seen.t0 == 0 { s.started_ms } else { seen.t0 };
                        seen.streams.push(s);
                    });
                    return match e {
                        Ok(f) => {
                            // What was acknowledged before the replacement failed is checked
                            // over the mount that is left (the pod is gone where the kubelet
                            // was down).
                            let checked = match stopped {
                                Ok(()) if kind != Kind::PodDeletedWhileKubeletDown => {
                                    verify_all(ctx, vol, pod.as_mut(), seen, SURVIVED, false)
                                }
                                Ok(()) => {
                                    Err("the pod was deleted while the kubelet was down".into())
                                }
                                Err(s) => Err(format!(
                                    "the stream's records were not read: {}",
                                    s.message.lines().next().unwrap_or("")
                                )),
                            };
                            Err(failed_replacement(seen, f, vec![checked]))
                        }
                        Err(why) => {
                            vol.stop_pod(pod)?;
                            ctx.noticed(vol);
                            Ok(Some(why))
                        }
                    };
                }
            }
        }
        if kind != Kind::PodDeletedWhileKubeletDown {
            std::thread::sleep(LEAD);
        }
    }
    // Read while the stream still writes; a failed read is returned once its figures are kept.
    let counted = if matches!(kind, Kind::PluginKill | Kind::KubeletRestart) {
        mounts_after_restart(vol, seen, kind, window_end)
    } else {
        Ok(())
    };
    let s = stop(ctx, stream)?;
    if seen.t0 == 0 {
        seen.t0 = s.started_ms;
    }
    seen.streams.push(s);
    counted?;
    match room(seen) {
        Room::Enough => {}
        Room::NoneAtAll => return Err(no_room()),
        Room::FilledAfter(n) => seen.not_checked.push(format!(
            "the volume filled up after {n} records: the stream wrote nothing after that, so what came later was not tested under writes"
        )),
        Room::NoWrite => seen.upgrade_problems.push(
            "no record was acknowledged during the whole stream: the volume took no durable write"
                .into(),
        ),
    }
    if kind == Kind::PodDeletedWhileKubeletDown {
        let why = "records the agent acknowledged while the kubelet was down were not seen and not verified: the agent's log is read through the kubelet, and went with the deleted pod".to_string();
        seen.not_checked.push(why);
        return after_teardown(ctx, vol, pod, seen);
    }
    // Over the mount that survived.
    match verify_all(ctx, vol, pod.as_mut(), seen, SURVIVED, false) {
        Ok(n) => seen.verified_in_place = n,
        Err(why) => seen.upgrade_problems.push(why),
    }
    if matches!(kind, Kind::PluginKill | Kind::KubeletRestart) && seen.data_problems.is_empty() {
        usable(ctx, vol, pod.as_mut(), seen);
    }
    // The new driver tears down and sets up the volume.
    let id = vol.id().to_string();
    pod = recreate_noticed(ctx, vol, pod).map_err(|f| {
        let f = f.context(&format!(
            "recreating the pod of volume {id} after the driver was replaced"
        ));
        if f.category == FailureCategory::Setup || f.category == FailureCategory::Protocol {
            f.category(FailureCategory::Upgrade)
        } else {
            f
        }
    })?;
    match verify_all(
        ctx,
        vol,
        pod.as_mut(),
        seen,
        "verify of acknowledged records after the recreate",
        true,
    ) {
        Ok(n) => seen.verified_after_recreate = n,
        Err(why) => seen.upgrade_problems.push(why),
    }
    if matches!(kind, Kind::PluginKill | Kind::KubeletRestart) {
        check_mounts(vol, seen, "after the recreate")?;
    }
    vol.stop_pod(pod)?;
    ctx.noticed(vol);
    Ok(None)
}

/// The most agents `live-upgrade` runs where the platform has nodes: one per node, up to this.
const MAX_AGENTS: usize = 3;

/// `live-upgrade` and `node-plugin-kill` where the platform has nodes: a volume and a writing
/// agent on each node the class can use (up to [`MAX_AGENTS`]; the check's volume on the first,
/// one more volume per further node), the upgrade followed node by node, or the node plugin
/// killed on every node (one window per node); for the kill each volume must then take new
/// data through the restarted plugin. Every agent's
/// records verified in place, then after a recreate (the check's volume on its node, the
/// second volume on another node). Where the volume can use one node only, [`roll`] with one
/// agent, and the trial says why.
fn roll_nodes(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    kind: Kind,
    steps: &[crate::platform::UpgradeStep],
    seen: &mut Seen,
) -> Result<Option<String>, Failure> {
    let pod = vol.start_pod()?;
    ctx.noticed(vol);
    let first = pod.node().map(str::to_string);
    let others = match (&first, vol.other_nodes()) {
        (None, _) => Err("the platform names no node for the pod".to_string()),
        (_, Ok(Elsewhere::Nodes(n))) => Ok(n),
        (_, Ok(Elsewhere::Nowhere(why))) => Err(why),
        (_, Err(e)) => Err(format!(
            "the other nodes the volume could use are not known: {e}"
        )),
    };
    let (first, others) = match (first, others) {
        (Some(f), Ok(o)) if !o.is_empty() => (f, o),
        (_, Err(why)) => {
            let note = format!("one agent, on one node: {why}");
            seen.agents_note = Some(note.clone());
            ctx.warn(note);
            return roll(ctx, vol, kind, steps, seen, Some(pod));
        }
        _ => {
            seen.agents_note = Some("one agent, on one node: no other node".into());
            return roll(ctx, vol, kind, steps, seen, Some(pod));
        }
    };
    let mut extras: Vec<Box<dyn Volume>> = Vec::new();
    let mut result = roll_lanes(
        ctx,
        vol,
        kind,
        pod,
        first,
        &others,
        &mut extras,
        steps,
        seen,
    );
    for v in extras {
        let r = ctx.finish_volume(v, result.as_ref().map(|_| ()).map_err(Failure::clone));
        if result.is_ok()
            && let Err(f) = r
        {
            result = Err(f);
        }
    }
    result
}

/// The volume of lane `i`: the check's for 0, else an extra one.
fn lane<'a>(
    vol: &'a mut dyn Volume,
    extras: &'a mut [Box<dyn Volume>],
    i: usize,
) -> &'a mut dyn Volume {
    if i == 0 { vol } else { extras[i - 1].as_mut() }
}

/// Marks a failure of the driver's own making (setup or protocol while it was replaced) as
/// the upgrade's.
fn as_upgrade(f: Failure) -> Failure {
    match f.category {
        FailureCategory::Setup | FailureCategory::Protocol => f.category(FailureCategory::Upgrade),
        _ => f,
    }
}

#[allow(clippy::too_many_arguments)]
fn roll_lanes(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    kind: Kind,
    pod0: Box<dyn Pod>,
    node0: String,
    others: &[String],
    extras: &mut Vec<Box<dyn Volume>>,
    steps: &[crate::platform::UpgradeStep],
    seen: &mut Seen,
) -> Result<Option<String>, Failure> {
    let mut pods: Vec<Box<dyn Pod>> = vec![pod0];
    let mut nodes = vec![node0];
    for i in 0..others.len().min(MAX_AGENTS - 1) {
        let mut v = ctx.provision(&format!("node{}", i + 2), 64 << 20)?;
        let p = v.start_pod_avoiding(&nodes);
        ctx.noticed(v.as_mut());
        extras.push(v);
        let p = p.map_err(|e| {
            Failure::from(e).context(&format!(
                "starting agent {} of {} on a node other than {}",
                i + 2,
                kind.name(),
                nodes.join(", ")
            ))
        })?;
        let Some(n) = p.node().map(str::to_string) else {
            return Err(Failure::setup(
                "the platform names no node for the second agent's pod",
            ));
        };
        nodes.push(n);
        pods.push(p);
    }
    seen.agents_note = Some(format!(
        "{} agents, one per node: {}",
        nodes.len(),
        nodes.join(", ")
    ));
    let mut streams = Vec::new();
    for (i, pod) in pods.iter_mut().enumerate() {
        let v = lane(vol, extras, i);
        streams.push(start(ctx, v, pod.as_mut(), i + 1)?);
    }
    lead_in_lanes(ctx, &mut streams, 0, seen)?;
    // The upgrade's steps, or the one kill of the node plugins.
    let rounds: Vec<Option<&crate::platform::UpgradeStep>> = match kind {
        Kind::LiveUpgrade => steps.iter().map(Some).collect(),
        _ => vec![None],
    };
    for (round, step) in rounds.into_iter().enumerate() {
        if seen.drain {
            // What such drivers document: the nodes cordoned, the workloads evicted, the
            // upgrade, the nodes uncordoned, the workloads back; then nothing may go wrong.
            let (ws, back) = drained_step(
                ctx,
                vol,
                extras,
                &mut pods,
                &nodes,
                step,
                seen,
                &mut streams,
            )?;
            if let Some(why) = back {
                return Ok(Some(why));
            }
            seen.windows.extend(ws);
            let fresh = streams.len();
            for (i, pod) in pods.iter_mut().enumerate() {
                let v = lane(vol, extras, i);
                streams.push(start(
                    ctx,
                    v,
                    pod.as_mut(),
                    (round + 1) * MAX_AGENTS + i + 1,
                )?);
            }
            lead_in_lanes(ctx, &mut streams, fresh, seen)?;
            continue;
        }
        let r = match step {
            Some(step) => vol.upgrade_live_nodes(step, &nodes),
            None => vol.kill_driver_nodes(&nodes),
        };
        ctx.noticed(vol);
        match r {
            Ok(ws) => seen.windows.extend(ws),
            Err(e) => {
                // Keep what the streams saw up to here in the metrics.
                let mut unread = Vec::new();
                for s in streams.drain(..) {
                    match stop(ctx, s) {
                        Ok(s) => seen.streams.push(s),
                        Err(f) => unread.push(Err(format!(
                            "a stream's records were not read: {}",
                            f.message.lines().next().unwrap_or("")
                        ))),
                    }
                }
                seen.t0 = seen.streams.iter().map(|s| s.started_ms).min().unwrap_or(0);
                if let crate::platform::PlatformError::Unsupported(why) = &e {
                    return Ok(Some(why.clone()));
                }
                let what = match step {
                    Some(step) => format!("upgrade step {:?}", step.name),
                    None => {
                        "the node plugins' SIGKILL (pods deleted with grace period 0) and restart"
                            .into()
                    }
                };
                let f = as_upgrade(Failure::from(e).context(&format!(
                    "{what} while the agents wrote on {}",
                    nodes.join(", ")
                )));
                // What was acknowledged is checked over the mounts that are left.
                let mut checked = unread;
                for (i, pod) in pods.iter_mut().enumerate() {
                    let v = lane(vol, extras, i);
                    checked.push(verify_all(ctx, v, pod.as_mut(), seen, SURVIVED, false));
                }
                return Err(failed_replacement(seen, f, checked));
            }
        }
        std::thread::sleep(LEAD);
    }
    // As on one node: the mount counts (a warning where the platform cannot read them), read
    // while the streams still write; a failed read is returned once their figures are kept.
    let counted = if kind == Kind::PluginKill {
        mounts_after_restart(vol, seen, kind, Instant::now())
    } else {
        Ok(())
    };
    for s in streams {
        let s = stop(ctx, s)?;
        seen.streams.push(s);
    }
    seen.t0 = seen.streams.iter().map(|s| s.started_ms).min().unwrap_or(0);
    counted?;
    match room(seen) {
        Room::Enough => {}
        Room::NoneAtAll => return Err(no_room()),
        Room::FilledAfter(n) => seen.not_checked.push(format!(
            "the volume filled up after {n} records: the stream wrote nothing after that, so what came later was not tested under writes"
        )),
        Room::NoWrite => seen.upgrade_problems.push(
            "no record was acknowledged during the whole stream: the volume took no durable write"
                .into(),
        ),
    }
    // Over the mounts that survived.
    let mut in_place = 0;
    for (i, pod) in pods.iter_mut().enumerate() {
        let v = lane(vol, extras, i);
        match verify_all(ctx, v, pod.as_mut(), seen, SURVIVED, false) {
            Ok(n) => in_place += n,
            Err(why) => seen.upgrade_problems.push(why),
        }
    }
    seen.verified_in_place = in_place;
    if kind == Kind::PluginKill {
        // Each volume takes new data through the restarted plugin.
        if seen.data_problems.is_empty() {
            for (i, pod) in pods.iter_mut().enumerate() {
                let before = seen.usable_after;
                usable(ctx, lane(vol, extras, i), pod.as_mut(), seen);
                if before == Some(false) {
                    seen.usable_after = before;
                }
            }
        }
    }
    // The new driver tears down and sets up each volume: the check's on its node, the second
    // one on another node, any further one on its node.
    let mut again = Vec::new();
    for (i, pod) in pods.into_iter().enumerate() {
        let v = lane(vol, extras, i);
        let id = v.id().to_string();
        let p = if i == 1 {
            v.stop_pod(pod)
                .and_then(|_| v.start_pod_avoiding(std::slice::from_ref(&nodes[1])))
                .map_err(Failure::from)
        } else {
            recreate_noticed(ctx, v, pod)
        };
        ctx.noticed(v);
        let p = p.map_err(|f| {
            as_upgrade(f.context(&format!(
                "recreating the pod of volume {id} after the driver was replaced"
            )))
        })?;
        seen.recreated_on.push((id, p.node().map(str::to_string)));
        again.push(p);
    }
    let mut after = 0;
    for (i, pod) in again.iter_mut().enumerate() {
        let v = lane(vol, extras, i);
        match verify_all(
            ctx,
            v,
            pod.as_mut(),
            seen,
            "verify of acknowledged records after the recreate",
            true,
        ) {
            Ok(n) => after += n,
            Err(why) => seen.upgrade_problems.push(why),
        }
    }
    seen.verified_after_recreate = after;
    if kind == Kind::PluginKill {
        check_mounts(vol, seen, "after the recreate")?;
    }
    for (i, pod) in again.into_iter().enumerate() {
        let v = lane(vol, extras, i);
        v.stop_pod(pod)?;
        ctx.noticed(v);
    }
    Ok(None)
}

/// One drained upgrade step on every lane: the streams stopped, the lanes' nodes cordoned,
/// every lane's pod evicted (and its volume detached), the step run (one window per node, as
/// undrained), the nodes uncordoned, and every lane's pod started again (on its node: the
/// volume goes back where it was). Returns the windows, or why nothing was tested.
#[allow(clippy::too_many_arguments)]
fn drained_step(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    extras: &mut [Box<dyn Volume>],
    pods: &mut Vec<Box<dyn Pod>>,
    nodes: &[String],
    step: Option<&crate::platform::UpgradeStep>,
    seen: &mut Seen,
    streams: &mut Vec<Stream>,
) -> Result<(Vec<DriverWindow>, Option<String>), Failure> {
    for s in streams.drain(..) {
        seen.streams.push(stop(ctx, s)?);
    }
    seen.t0 = seen.streams.iter().map(|s| s.started_ms).min().unwrap_or(0);
    let cordoned = vol
        .cordon(nodes)
        .map_err(|e| Failure::from(e).context("cordoning before the drained upgrade"))?;
    ctx.noticed(vol);
    let what = match step {
        Some(s) => format!("upgrade step {:?}", s.name),
        None => "the node plugins' SIGKILL and restart".into(),
    };
    // Where the platform names no node (the local one): the volume.
    let whose = if nodes.is_empty() {
        "the volume".to_string()
    } else {
        nodes.join(", ")
    };
    let lanes = pods.len();
    let mut drained = || -> Result<(Vec<DriverWindow>, Option<String>), Failure> {
        let mut evicted = Vec::new();
        for (i, pod) in pods.drain(..).enumerate() {
            let v = lane(vol, extras, i);
            let r = v.evict_pod(pod);
            ctx.noticed(v);
            evicted.extend(r.map_err(|e| {
                Failure::from(e).context(&format!(
                    "evicting the pods of {whose} before the drained upgrade"
                ))
            })?);
        }
        seen.drained.push(json!({
            "step": step.map(|s| s.name.clone()),
            "cordoned": cordoned,
            "evicted": evicted,
        }));
        let r = match step {
            Some(step) => vol.upgrade_live_nodes(step, nodes),
            None => vol.kill_driver_nodes(nodes),
        };
        ctx.noticed(vol);
        match r {
            Ok(ws) => Ok((ws, None)),
            Err(crate::platform::PlatformError::Unsupported(why)) => Ok((Vec::new(), Some(why))),
            Err(e) => Err(as_upgrade(
                Failure::from(e).context(&format!("{what} with {whose} drained")),
            )),
        }
    };
    let r = drained();
    let uncordoned = vol.uncordon(&cordoned);
    let (ws, why) = r?;
    uncordoned.map_err(Failure::from)?;
    if why.is_some() {
        return Ok((ws, why));
    }
    // The workloads come back where they were.
    for i in 0..lanes {
        let v = lane(vol, extras, i);
        let id = v.id().to_string();
        let p = v.start_pod();
        ctx.noticed(v);
        pods.push(p.map_err(|e| {
            Failure::from(e)
                .context(&format!(
                    "publishing volume {id} again after the drained upgrade"
                ))
                .category(FailureCategory::Upgrade)
        })?);
    }
    Ok((ws, None))
}

/// `pod-deleted-while-kubelet-down`, once the kubelet, back, removed the pods and the volume
/// was detached: a new pod on the same node mounts it, every acknowledged record is verified
/// there, and the volume is usable.
fn after_teardown(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    old: Box<dyn Pod>,
    seen: &mut Seen,
) -> Result<Option<String>, Failure> {
    // Its pods are gone already: this only confirms the detach.
    vol.stop_pod(old)?;
    ctx.noticed(vol);
    let id = vol.id().to_string();
    let mut pod = vol.start_pod().map_err(|e| {
        Failure::from(e)
            .context(&format!(
                "mounting volume {id} in a new pod on the same node after the kubelet tore it down"
            ))
            .category(FailureCategory::Upgrade)
    })?;
    ctx.noticed(vol);
    match verify_all(
        ctx,
        vol,
        pod.as_mut(),
        seen,
        "verify of acknowledged records in a new pod after the kubelet tore the volume down",
        true,
    ) {
        Ok(n) => seen.verified_after_recreate = n,
        Err(why) => seen.upgrade_problems.push(why),
    }
    check_mounts(vol, seen, "in the new pod")?;
    if seen.data_problems.is_empty() {
        usable(ctx, vol, pod.as_mut(), seen);
    }
    vol.stop_pod(pod)?;
    ctx.noticed(vol);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(began: u64) -> DriverWindow {
        DriverWindow {
            what: "upgrade".into(),
            began_ms: began,
            old_stopped_ms: Some(began + 20),
            new_answered_ms: began + 400,
            node: None,
            report: Value::Null,
        }
    }

    /// A window opened before the agent's first acknowledgement would test nothing. What a
    /// running stream has said is read from its output as it grows: only whole record
    /// lines count, and its start (or a slow write) does not explain an absence of records.
    #[test]
    fn a_window_waits_for_the_first_acknowledged_record_or_a_reason_for_none() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("live-1.out");
        assert_eq!(so_far(&out), (0, false), "no output yet");
        let header = "{\"acks\":1}\n";
        let start = "{\"event\":{\"kind\":\"start\",\"at_ms\":1}}\n";
        let slow = "{\"event\":{\"kind\":\"slow\",\"op\":\"fsync\",\"at_ms\":2,\"ms\":900}}\n";
        std::fs::write(&out, format!("{header}{start}{slow}{{\"record\":0}}")).unwrap();
        assert_eq!(
            so_far(&out),
            (0, false),
            "a record cut mid-line is not acknowledged"
        );
        std::fs::write(
            &out,
            format!("{header}{start}{{\"record\":0}}\n{{\"record\":1}}\n"),
        )
        .unwrap();
        assert_eq!(so_far(&out), (2, false));
        for kind in ["error", "stall", "full", "end"] {
            let said = format!("{{\"event\":{{\"kind\":\"{kind}\",\"at_ms\":3}}}}\n");
            std::fs::write(&out, format!("{header}{start}{said}")).unwrap();
            assert_eq!(so_far(&out), (0, true), "{kind}");
        }
    }

    /// The upgrade failure names the errno, its message and where in the window it came.
    #[test]
    fn an_enotconn_during_the_window_is_named_with_its_time_in_the_window() {
        let seen = Seen {
            kind: Some(Kind::LiveUpgrade),
            t0: 10_000,
            windows: vec![window(13_000)],
            streams: vec![Streamed {
                dir: "d".into(),
                acks: PathBuf::new(),
                records: 5,
                events: vec![
                    json!({"kind":"start","at_ms":10_000}),
                    json!({"kind":"error","op":"write","errno":"ENOTCONN","message":"Transport endpoint is not connected (os error 107)","at_ms":15_100}),
                    json!({"kind":"error","op":"read","errno":"ENOTCONN","message":"Transport endpoint is not connected (os error 107)","at_ms":16_000}),
                ],
                started_ms: 10_000,
                stopped_ms: 20_000,
                ..Streamed::default()
            }],
            ..Seen::default()
        };
        let f = verdict(&seen).unwrap_err();
        assert_eq!(f.category, FailureCategory::Upgrade);
        assert!(
            f.message
                .starts_with("after 2.1 s of the upgrade (step upgrade)"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains(
                "the mount answered ENOTCONN: transport endpoint is not connected (2× in write/read"
            ),
            "{}",
            f.message
        );
    }

    /// One agent per node, the upgrade followed node by node: an error of the agent on n2 is
    /// placed in n2's window (not n1's, although n1's began later), and each window's `agent`
    /// metrics hold what its own node's agent saw.
    #[test]
    fn with_an_agent_per_node_an_error_is_placed_in_its_own_nodes_window() {
        let on = |node: &str, began: u64| {
            let mut w = window(began);
            w.node = Some(node.into());
            w
        };
        let stream = |node: &str, events: Vec<Value>| Streamed {
            dir: "live-1".into(),
            volume: format!("v-{node}"),
            node: Some(node.into()),
            records: 10,
            events,
            started_ms: 10_000,
            stopped_ms: 30_000,
            ..Streamed::default()
        };
        let seen = Seen {
            kind: Some(Kind::LiveUpgrade),
            t0: 10_000,
            windows: vec![on("n2", 13_000), on("n1", 15_000)],
            streams: vec![
                stream("n1", vec![]),
                stream(
                    "n2",
                    vec![
                        json!({"kind":"error","op":"write","errno":"ENOTCONN","message":"Transport endpoint is not connected (os error 107)","at_ms":16_000}),
                    ],
                ),
            ],
            ..Seen::default()
        };
        let f = verdict(&seen).unwrap_err();
        assert!(
            f.message
                .starts_with("after 3.0 s of the upgrade (step upgrade) on node n2"),
            "{}",
            f.message
        );
        let m = seen.metrics();
        assert_eq!(m["windows"][0]["node"], "n2");
        assert_eq!(
            m["windows"][0]["agent"]["errors_by_kind"]["ENOTCONN"]["count"],
            1
        );
        assert_eq!(m["windows"][1]["agent"]["errors_by_kind"], json!({}));
        assert_eq!(m["agents"].as_array().map(Vec::len), Some(2));
    }

    /// An operation still hanging when the stream was stopped counts to the stop; one that
    /// finished counts its own duration.
    #[test]
    fn a_stall_still_running_at_the_stop_counts_until_the_stop() {
        let mut seen = Seen {
            t0: 0,
            windows: vec![window(1_000)],
            streams: vec![Streamed {
                dir: "d".into(),
                acks: PathBuf::new(),
                records: 1,
                events: vec![
                    json!({"kind":"slow","op":"fsync","at_ms":2_000,"ms":1_500}),
                    json!({"kind":"stall","op":"write","since_ms":3_000,"at_ms":33_100}),
                ],
                started_ms: 0,
                stopped_ms: 43_000,
                ..Streamed::default()
            }],
            ..Seen::default()
        };
        let (s, op, _) = seen.longest_stall();
        assert_eq!((s, op.as_str()), (40.0, "write"));
        assert!(
            verdict(&seen)
                .unwrap_err()
                .message
                .contains("a stall (over 30 s)")
        );
        // Finished after 35 s: reported as slow at its start.
        seen.streams[0]
            .events
            .push(json!({"kind":"slow","op":"write","at_ms":3_000,"ms":35_000}));
        assert_eq!(seen.longest_stall().0, 35.0);
    }

    /// A flexVolume driver's kill names what was killed: the processes the driver left for the
    /// volume, not a node plugin that does not exist.
    #[test]
    fn a_flexvolume_kill_window_names_the_killed_pids() {
        let mut w = window(13_000);
        w.what = "SIGKILL".into();
        w.report =
            json!({"signal": "SIGKILL", "killed": [{"pid": 4242, "cmdline": "d", "why": "x"}]});
        let seen = Seen {
            kind: Some(Kind::PluginKill),
            t0: 10_000,
            windows: vec![w],
            ..Seen::default()
        };
        let text = seen.describe_window(&seen.windows[0]);
        assert!(
            text.starts_with(
                "the SIGKILL of what the driver left running for the volume (pid 4242), begun 3.0 s"
            ),
            "{text}"
        );
    }

    /// A record lost across a kubelet restart names the kubelet's window, not a driver's.
    #[test]
    fn a_kubelet_window_is_described_by_the_kubelet_stop_and_its_lease() {
        let seen = Seen {
            kind: Some(Kind::KubeletRestart),
            t0: 10_000,
            ..Seen::default()
        };
        let w = DriverWindow {
            what: "kubelet restart".into(),
            began_ms: 13_000,
            old_stopped_ms: Some(13_200),
            new_answered_ms: 19_100,
            node: Some("n1".into()),
            report: Value::Null,
        };
        assert_eq!(
            seen.describe_window(&w),
            "the kubelet restart on node n1, begun 3.0 s into the stream: kubelet stopped after 0.2 s, back (its Lease renewed) after 6.1 s"
        );
    }

    /// A quiet stream through the window passes.
    #[test]
    fn no_error_no_stall_passes() {
        let seen = Seen {
            windows: vec![window(1_000)],
            streams: vec![Streamed {
                dir: "d".into(),
                acks: PathBuf::new(),
                records: 100,
                events: vec![json!({"kind":"slow","op":"fsync","at_ms":2_000,"ms":1_200})],
                started_ms: 0,
                stopped_ms: 5_000,
                ..Streamed::default()
            }],
            ..Seen::default()
        };
        assert!(matches!(verdict(&seen), Ok(Verdict::Passed)));
    }

    /// A replacement that failed is `upgrade` and says what the mounts it left still held;
    /// damage found there (or by a probe before) makes it `data`, the replacement after it
    /// (as [`run`] ends the check: [`damage_first`] over the failure).
    #[test]
    fn a_failed_replacement_never_hides_damage_found_over_the_mount_it_left() {
        let two = |records| {
            (1..=2)
                .map(|i| Streamed {
                    dir: format!("live-{i}"),
                    records,
                    ..Streamed::default()
                })
                .collect::<Vec<_>>()
        };
        let failed = || {
            Failure::new("upgrade step \"upgrade\" while the agents wrote on n1, n2: exit 3")
                .category(FailureCategory::Upgrade)
        };
        // Nothing lost: the upgrade's failure, with the records verified.
        let mut seen = Seen {
            streams: two(10),
            ..Seen::default()
        };
        let f = failed_replacement(&mut seen, failed(), vec![Ok(10), Ok(10)]);
        assert_eq!(f.category, FailureCategory::Upgrade);
        assert!(
            f.message
                .contains("all 20 acknowledged record(s) were verified"),
            "{}",
            f.message
        );
        assert_eq!(seen.verified_in_place, 20);
        // One agent's mount could not be read: said, not counted.
        let mut seen = Seen {
            streams: two(10),
            ..Seen::default()
        };
        let f = failed_replacement(
            &mut seen,
            failed(),
            vec![Ok(10), Err("pod start timed out".into())],
        );
        assert_eq!(f.category, FailureCategory::Upgrade);
        assert!(
            f.message
                .contains("10 of 20 acknowledged record(s) verified")
                && f.message.contains("not verified: pod start timed out"),
            "{}",
            f.message
        );
        // Damage over the mount that is left: data first, the replacement after it.
        let mut seen = Seen {
            streams: two(10),
            data_problems: vec![Failure::data("verify …: 3 damaged block(s)")],
            ..Seen::default()
        };
        let f = failed_replacement(&mut seen, failed(), vec![Ok(10), Ok(0)]);
        let f = damage_first(&seen, f);
        assert_eq!(f.category, FailureCategory::Data);
        assert!(
            f.message.starts_with("verify …: 3 damaged block(s)"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("(the check then stopped: upgrade step"),
            "{}",
            f.message
        );
        // A probe's read-back that found another record counts as damage too.
        let mut seen = Seen {
            streams: vec![Streamed {
                records: 4,
                events: vec![
                    json!({"kind":"mismatch","record":2,"file":"f","offset":8192,"zeroed":true,"at_ms":5}),
                ],
                ..Streamed::default()
            }],
            ..Seen::default()
        };
        let f = failed_replacement(&mut seen, failed(), vec![Ok(4)]);
        let f = damage_first(&seen, f);
        assert_eq!(f.category, FailureCategory::Data, "{}", f.message);
        // A failure that is data already is not wrapped twice.
        assert_eq!(damage_first(&seen, f.clone()).message, f.message);
    }

    /// A full volume is not blamed on the driver: full before the first record is `setup`
    /// (nothing was tested), full later is said as not tested, no write at all with room is
    /// the volume's fault under the upgrade.
    #[test]
    fn a_volume_full_before_the_first_record_is_setup_not_an_upgrade_failure() {
        let seen = |records: u64, full: Option<u64>| Seen {
            kind: Some(Kind::LiveUpgrade),
            streams: vec![Streamed {
                dir: "d".into(),
                acks: PathBuf::new(),
                records,
                events: full
                    .map(|n| json!({"kind": "full", "at_ms": 1_000, "records": n}))
                    .into_iter()
                    .collect(),
                started_ms: 0,
                stopped_ms: 5_000,
                ..Streamed::default()
            }],
            ..Seen::default()
        };
        assert_eq!(room(&seen(0, Some(0))), Room::NoneAtAll);
        assert_eq!(no_room().category, FailureCategory::Setup);
        assert_eq!(room(&seen(0, None)), Room::NoWrite);
        assert_eq!(room(&seen(40, Some(40))), Room::FilledAfter(40));
        assert_eq!(room(&seen(40, None)), Room::Enough);
    }

    /// A mount that another took the place of under the running pod (a driver that remounts
    /// on restart: the pod's open files keep the old one) fails with both devices named; a
    /// flip to read-only alone is EROFS, once.
    #[test]
    fn a_mount_replaced_under_the_pod_fails_the_upgrade_with_both_devices_named() {
        let mount = |id: &str, dev: &str, ro: bool| json!({"id": id, "device": dev, "point": "/v", "read_only": ro, "fstype": "ext4"});
        let stream = |event: Value| Streamed {
            dir: "d".into(),
            acks: PathBuf::new(),
            records: 100,
            events: vec![event],
            started_ms: 0,
            stopped_ms: 5_000,
            ..Streamed::default()
        };
        let seen = Seen {
            kind: Some(Kind::LiveUpgrade),
            windows: vec![window(1_000)],
            streams: vec![stream(json!({"kind":"mount","at_ms":1_300,
                "from": mount("812", "0:52", false), "to": mount("830", "0:57", false)}))],
            ..Seen::default()
        };
        let f = verdict(&seen).unwrap_err();
        assert_eq!(f.category, FailureCategory::Upgrade);
        assert!(
            f.message.contains(
                "the mount at /v was replaced: device 0:52 (mount 812) became device 0:57 (mount 830)"
            ) && f.message.starts_with("during "),
            "{}",
            f.message
        );
        let seen = Seen {
            windows: vec![window(1_000)],
            streams: vec![stream(json!({"kind":"mount","at_ms":1_300,
                "from": mount("812", "0:52", false), "to": mount("812", "0:52", true)}))],
            ..Seen::default()
        };
        let f = verdict(&seen).unwrap_err();
        assert!(f.message.contains("answered EROFS"), "{}", f.message);
        assert!(!f.message.contains("was replaced"), "{}", f.message);
    }
}
