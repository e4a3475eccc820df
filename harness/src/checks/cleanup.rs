//! `cleanup`: after every other check of the class, nothing of its volumes is left
//! (directories, images, loop devices, mounts, processes), except volumes kept on purpose.

use super::{CheckCtx, Failure, Verdict};
use crate::platform::RunFilter;

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let filter = RunFilter::Run {
        run_id: ctx.run_id.clone(),
        class: Some(ctx.class.name().to_string()),
    };
    let left = ctx.platform.leftovers(&filter)?;
    ctx.metric("leftovers", serde_json::to_value(&left).unwrap_or_default());
    if left.is_empty() {
        return Ok(Verdict::Passed);
    }
    let list: Vec<String> = left
        .iter()
        .map(|l| format!("{} {}", l.kind, l.what))
        .collect();
    let n = left.len();
    Err(Failure::setup(format!(
        "{} of class {} {} not removed: {}",
        crate::registry::count(n, "thing"),
        ctx.class.name(),
        if n == 1 { "was" } else { "were" },
        list.join("; ")
    ))
    .with_details(serde_json::json!({ "leftovers": left })))
}
