//! `pvcheck cleanup`: removes what dead runs left behind, and only what their registries name.
//!
//! A run is *dead* when the pvcheck process recorded in its `owner.json` is gone (same pid and
//! start time). A live run is never touched: it removes what it created itself when it ends or
//! is interrupted. `pvcheck cleanup RUN_ID…` removes only the named runs (for example one run
//! that kept a failed volume, and not another); without ids it removes every dead run.
//!
//! Everything is described *before* it is removed (a detached loop device has no name any
//! more), and a run directory that holds evidence (ledgers, acknowledgement streams, agent
//! reports) is named as such when it is deleted. One pass always suffices: see
//! [`Registry::remove_present`] for the order.
//!
//! [`dead_run_notice`] is the one line `pvcheck run` prints when earlier runs left things behind.

use std::path::{Path, PathBuf};

use crate::registry::{Registry, RegistryError, Resource, count};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(
        "{0:?} is not a run id: run ids are letters, digits, '-' and '_' (see `pvcheck cleanup --dry-run`)"
    )]
    BadRunId(String),
    #[error("there is no run {id} in {runs} ({known})")]
    NoSuchRun {
        id: String,
        runs: PathBuf,
        known: String,
    },
    #[error(
        "run {id} is still running (pid {pid}); it removes what it created when it ends or is interrupted (Ctrl-C)"
    )]
    Running { id: String, pid: i32 },
    #[error("{0}")]
    Registry(#[from] RegistryError),
}

/// Which runs to clean.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every run whose pvcheck process is gone.
    Dead,
    /// Exactly these runs (each must exist and be dead).
    Runs(Vec<String>),
}

/// One thing a run left, described before removal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Thing {
    /// `mount`, `loop device`, `process`, … (see [`Resource::noun`]).
    pub noun: &'static str,
    /// Path, device, pid (see [`Resource::describe`]).
    pub what: String,
    pub class: Option<String>,
}

impl Thing {
    fn of(resource: &Resource, what: String, class: Option<String>) -> Self {
        Self {
            noun: resource.noun(),
            what,
            class,
        }
    }
}

/// What one dead run left, and (after [`remove`]) what became of it.
#[derive(Debug)]
pub struct RunCleanup {
    pub run_id: String,
    pub dir: PathBuf,
    /// Present things (shared parent directories, used by other runs too, are not listed).
    pub things: Vec<Thing>,
    /// Volumes kept with --keep-on-failure.
    pub kept: Vec<String>,
    /// Evidence files in the run directory (ledgers, acks, reports).
    pub evidence: Vec<PathBuf>,
    /// After removal: what could not be removed, one sentence each.
    pub failures: Vec<String>,
}

/// A run id as `pvcheck run` makes them (and nothing that could walk out of `runs/`).
fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The runs to clean, checked before anything is touched: a bad, unknown or live run id
/// refuses the whole command.
pub fn select(state_dir: &Path, sel: &Selection) -> Result<Vec<Registry>, CleanupError> {
    let runs = state_dir.join("runs");
    match sel {
        Selection::Dead => Registry::dead_runs(state_dir)?
            .iter()
            .map(|d| Registry::open(d).map_err(CleanupError::from))
            .collect(),
        Selection::Runs(ids) => {
            let mut out = Vec::new();
            for id in ids {
                if !valid_run_id(id) {
                    return Err(CleanupError::BadRunId(id.clone()));
                }
                let dir = runs.join(id);
                if !dir.join("owner.json").is_file() {
                    let dead: Vec<String> = Registry::dead_runs(state_dir)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .collect();
                    let known = if dead.is_empty() {
                        "no dead run is recorded there".to_string()
                    } else {
                        format!("dead runs there: {}", dead.join(", "))
                    };
                    return Err(CleanupError::NoSuchRun {
                        id: id.clone(),
                        runs: runs.clone(),
                        known,
                    });
                }
                let reg = Registry::open(&dir)?;
                if let Some(pid) = reg.owner_alive() {
                    return Err(CleanupError::Running {
                        id: id.clone(),
                        pid,
                    });
                }
                if !out.iter().any(|r: &Registry| r.run_id() == id) {
                    out.push(reg);
                }
            }
            Ok(out)
        }
    }
}

/// What `reg` (a dead run) left, without removing anything.
pub fn survey(reg: &Registry) -> Result<RunCleanup, CleanupError> {
    let things = reg
        .present(None, true)?
        .into_iter()
        .filter(|r| !matches!(r.resource, Resource::SharedDir { .. }))
        .map(|r| {
            let what = r.resource.describe_in_run(Some(reg.run_id()));
            Thing::of(&r.resource, what, r.class.clone())
        })
        .collect();
    Ok(RunCleanup {
        run_id: reg.run_id().to_string(),
        dir: reg.dir().to_path_buf(),
        things,
        kept: reg.kept()?,
        evidence: reg.evidence_files(),
        failures: Vec::new(),
    })
}

/// Removes what `reg` (a dead run) left, then its directory. `things` lists what was removed.
pub fn remove(reg: &Registry) -> Result<RunCleanup, CleanupError> {
    let kept = reg.kept()?;
    let evidence = reg.evidence_files();
    let (removed, failed) = reg.remove_present(None, true)?;
    let mut failures: Vec<String> = failed.into_iter().map(|(_, why)| why).collect();
    if failures.is_empty()
        && let Err(e) = reg.remove_run_dir()
    {
        failures.push(e.to_string());
    }
    Ok(RunCleanup {
        run_id: reg.run_id().to_string(),
        dir: reg.dir().to_path_buf(),
        things: removed
            .into_iter()
            .filter(|d| !matches!(d.record.resource, Resource::SharedDir { .. }))
            .map(|d| Thing::of(&d.record.resource, d.what, d.record.class))
            .collect(),
        kept,
        evidence,
        failures,
    })
}

/// The sentence about a run directory that is (or would be) deleted with evidence in it, if any.
pub fn evidence_sentence(c: &RunCleanup, verb: &str) -> Option<String> {
    if c.evidence.is_empty() && c.kept.is_empty() {
        return None;
    }
    let kept = if c.kept.is_empty() {
        String::new()
    } else {
        format!(
            " of kept volume{} {}",
            if c.kept.len() == 1 { "" } else { "s" },
            c.kept.join(", ")
        )
    };
    let example = c
        .evidence
        .first()
        .and_then(|p| p.strip_prefix(&c.dir).ok())
        .map(|p| format!(", such as {}", p.display()))
        .unwrap_or_default();
    Some(format!(
        "{verb} the directory of run {} ({}) with its evidence{kept}: {} (ledgers, acknowledgement streams, agent reports){example}.",
        c.run_id,
        c.dir.display(),
        count(c.evidence.len(), "file"),
    ))
}

/// The one line `pvcheck run` prints when dead runs left things behind (`None` when none did).
/// `current` is the starting run's id, never counted.
pub fn dead_run_notice(state_dir: &Path, current: &str) -> Option<String> {
    let dirs = Registry::dead_runs(state_dir).ok()?;
    let mut killed: Vec<RunCleanup> = Vec::new();
    let mut kept: Vec<RunCleanup> = Vec::new();
    for d in dirs {
        let Ok(reg) = Registry::open(&d) else {
            continue;
        };
        if reg.run_id() == current {
            continue;
        }
        let Ok(c) = survey(&reg) else { continue };
        if c.kept.is_empty() {
            killed.push(c);
        } else {
            kept.push(c);
        }
    }
    if killed.is_empty() && kept.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !killed.is_empty() {
        let n: usize = killed.iter().map(|c| c.things.len()).sum();
        let mut nouns: Vec<&str> = Vec::new();
        for t in killed.iter().flat_map(|c| &c.things) {
            if !nouns.contains(&t.noun) {
                nouns.push(t.noun);
            }
        }
        let runs = if killed.len() == 1 {
            format!("an earlier run ({}) died", killed[0].run_id)
        } else {
            format!("{} earlier runs died", killed.len())
        };
        parts.push(if n == 0 {
            format!(
                "{runs} and left its records in {}",
                state_dir.join("runs").display()
            )
        } else {
            let list = nouns
                .iter()
                .map(|noun| {
                    let k = killed
                        .iter()
                        .flat_map(|c| &c.things)
                        .filter(|t| t.noun == *noun)
                        .count();
                    count(k, noun)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{runs} and left {list} behind")
        });
    }
    if !kept.is_empty() {
        let ids: Vec<&str> = kept.iter().map(|c| c.run_id.as_str()).collect();
        parts.push(format!(
            "{} kept a failed volume on purpose ({}; `pvcheck cleanup {}` removes {})",
            if kept.len() == 1 { "1 run" } else { "runs" },
            ids.join(", "),
            ids.join(" "),
            if kept.len() == 1 { "it" } else { "them" },
        ));
    }
    let remedy = if killed.is_empty() {
        String::new()
    } else {
        "; `pvcheck cleanup` removes what dead runs left (`--dry-run` lists it first)".to_string()
    };
    Some(parts.join("; ") + &remedy + ".")
}

/// `pvcheck cleanup [--dry-run] [RUN_ID…]` on the local state directory: prints one sentence
/// per thing, the evidence sentence per run directory and a count; returns the exit code (0 all
/// removed or nothing to remove, 1 something could not be removed, 2 bad input, nothing touched).
pub fn command(state_dir: &Path, run_ids: &[String], dry_run: bool) -> u8 {
    use crate::exit_code;
    let state_dir = state_dir.to_path_buf();
    let sel = if run_ids.is_empty() {
        Selection::Dead
    } else {
        Selection::Runs(run_ids.to_vec())
    };
    // Every id is checked before anything is touched: one bad id refuses the whole command.
    let runs = match select(&state_dir, &sel) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvcheck: cleanup: {e}");
            return exit_code::USAGE;
        }
    };
    if runs.is_empty() {
        println!(
            "Nothing to remove: no dead run is recorded in {}.",
            state_dir.join("runs").display()
        );
        return exit_code::OK;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let (mut things, mut dirs, mut failed) = (0, 0, false);
    for reg in &runs {
        let done = if dry_run { survey(reg) } else { remove(reg) };
        let c = match done {
            Ok(c) => c,
            Err(e) => {
                eprintln!("pvcheck: cleanup: run {}: {e}", reg.run_id());
                failed = true;
                continue;
            }
        };
        for t in &c.things {
            let class = t
                .class
                .as_ref()
                .map(|cl| format!(", class {cl}"))
                .unwrap_or_default();
            println!(
                "{} {} {} (run {}{class}).",
                capitalized(verb),
                t.noun,
                t.what,
                c.run_id
            );
        }
        things += c.things.len();
        for f in &c.failures {
            eprintln!("pvcheck: cleanup: run {}: {f}", c.run_id);
        }
        if !c.failures.is_empty() {
            failed = true;
            continue;
        }
        dirs += 1;
        match evidence_sentence(&c, &capitalized(verb)) {
            Some(s) => println!("{s}"),
            None => println!(
                "{} the directory of run {} ({}).",
                capitalized(verb),
                c.run_id,
                c.dir.display()
            ),
        }
    }
    println!(
        "{} {} and the director{} of {} from {}.",
        capitalized(verb),
        count(things, "thing"),
        if dirs == 1 { "y" } else { "ies" },
        count(dirs, "run"),
        state_dir.display()
    );
    if failed {
        eprintln!(
            "pvcheck: cleanup: some things could not be removed (see above); fix the cause and run `pvcheck cleanup` again."
        );
        return exit_code::CHECK_FAILED;
    }
    exit_code::OK
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pvcheck cleanup ../../etc` must never reach outside the state directory's `runs/`.
    #[test]
    fn run_ids_that_could_name_another_directory_are_refused() {
        for bad in ["", "..", "../x", "a/b", "a b", ".hidden", &"x".repeat(65)] {
            assert!(!valid_run_id(bad), "{bad:?} accepted");
        }
        for good in ["1a2b3c4d", "run_1", "A-b"] {
            assert!(valid_run_id(good), "{good:?} refused");
        }
    }

    #[test]
    fn an_unknown_run_id_is_refused_before_anything_is_touched() {
        let state = tempfile::tempdir().unwrap();
        let err = select(state.path(), &Selection::Runs(vec!["deadbeef".into()])).unwrap_err();
        assert!(
            err.to_string().starts_with("there is no run deadbeef in "),
            "{err}"
        );
        assert!(
            !state.path().join("runs").exists(),
            "cleanup created the runs directory"
        );
    }
}
