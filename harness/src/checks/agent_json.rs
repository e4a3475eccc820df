//! Running the agent and reading its JSON, with failures that say what ran and what it said.

use serde_json::Value;

use super::{CheckCtx, Failure};
use crate::platform::{AgentCall, AgentOutput, AgentTarget, Pod, Volume};
use crate::report::results::FailureCategory;

/// The category of an agent run that ended badly (exit 2 or a signal): no space on the volume
/// is a setup problem (the class is too small for the profile); anything else means the agent
/// could not do its work (infrastructure). Damage and stalls are categorised by the caller.
pub fn category(out: &AgentOutput) -> FailureCategory {
    let err = out.stderr.to_ascii_lowercase();
    if err.contains("no space left") || err.contains("enospc") || err.contains("free space") {
        FailureCategory::Setup
    } else {
        FailureCategory::Infrastructure
    }
}

/// Runs the agent; an agent that could not even start, or timed out, is a failure.
pub fn run(
    ctx: &CheckCtx,
    pod: &mut dyn Pod,
    call: &AgentCall,
    what: &str,
) -> Result<AgentOutput, Failure> {
    let start = std::time::Instant::now();
    let out = pod.run_agent(call);
    ctx.agent_clock.span(start, std::time::Instant::now());
    out.map_err(|e| Failure::from(e).context(what))
}

/// A pod just started and its first call's output ([`start_running`]).
pub type Started = (Box<dyn Pod>, Result<AgentOutput, Failure>);

/// Starts `vol`'s pod with the call `call` makes for its target as its first work
/// ([`Volume::start_pod_running`]). `Err` (with `starting`, when given, as its context) when
/// the pod did not start; the call's output, or its failure (with `what` as its context), comes with the
/// pod.
pub fn start_running(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    call: &dyn Fn(AgentTarget<'_>) -> AgentCall,
    starting: Option<&str>,
    what: &str,
) -> Result<Started, Failure> {
    let (pod, out) = vol.start_pod_running(call).map_err(|e| match starting {
        Some(s) => Failure::from(e).context(s),
        None => Failure::from(e),
    })?;
    if let Ok(o) = &out {
        let end = std::time::Instant::now();
        ctx.agent_clock
            .span(end.checked_sub(o.elapsed).unwrap_or(end), end);
    }
    Ok((pod, out.map_err(|e| Failure::from(e).context(what))))
}

/// Parses the agent's stdout as one JSON value.
pub fn parse(out: &AgentOutput, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(out.stdout.trim()).map_err(|e| {
        Failure::new(format!(
            "{what}: the agent printed no valid JSON ({e}); {}; stderr: {}\ncommand: {}",
            out.status(),
            out.stderr_line(),
            out.command
        ))
    })
}

/// Runs the agent and requires exit 0 and JSON on stdout.
pub fn run_ok(
    ctx: &CheckCtx,
    pod: &mut dyn Pod,
    call: &AgentCall,
    what: &str,
) -> Result<(AgentOutput, Value), Failure> {
    let out = run(ctx, pod, call, what)?;
    let v = ok(&out, what)?;
    Ok((out, v))
}

/// Requires exit 0 and JSON on stdout of an agent's run.
pub fn ok(out: &AgentOutput, what: &str) -> Result<Value, Failure> {
    if out.code != Some(0) {
        return Err(Failure::new(format!(
            "{what}: the agent failed ({}): {}\ncommand: {}",
            out.status(),
            out.stderr_line(),
            out.command
        ))
        .category(category(out)));
    }
    parse(out, what)
}

/// `v[a][b]…` as f64, if present.
pub fn f64_at(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}
