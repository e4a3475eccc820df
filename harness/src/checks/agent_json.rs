//! Running the agent and reading its JSON, with failures that say what ran and what it said.

use serde_json::Value;

use super::{CheckCtx, Failure};
use crate::platform::{AgentCall, AgentOutput, Pod};
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
    if out.code != Some(0) {
        return Err(Failure::new(format!(
            "{what}: the agent failed ({}): {}\ncommand: {}",
            out.status(),
            out.stderr_line(),
            out.command
        ))
        .category(category(&out)));
    }
    let v = parse(&out, what)?;
    Ok((out, v))
}

/// `v[a][b]…` as f64, if present.
pub fn f64_at(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}
