//! `--phase before-upgrade` and `--phase after-upgrade --resume RUN_ID`: a driver upgrade done
//! by another pipeline (a Helm upgrade, a GitOps sync) between two runs.
//!
//! The first run writes each class's integrity dataset and keeps the volume, attached and
//! mounted by its holder pod through the upgrade as a workload's would be, with the ledger in
//! the result file and in a ConfigMap of the run's namespace. The second run takes that
//! namespace over, verifies what the first wrote (across a pod recreation, so a detach and an
//! attach by the upgraded driver), rewrites, verifies again and removes everything. Only
//! `integrity::upgrade` runs in either phase; the class's own `upgrade.command` is not run (the
//! other pipeline is the upgrade).
//!
//! Platform-neutral: the platform is only a [`PlatformKind`] here, and the flags that reach the
//! same cluster again come ready-made from the platform's selection
//! ([`crate::platform::select::Choice::resume_args`]).

use std::path::{Path, PathBuf};

use crate::platform::PlatformKind;

/// Which part of the upgrade check a run does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Every check; `integrity::upgrade` runs the class's own upgrade steps.
    #[default]
    Whole,
    /// Write and keep the volumes for an upgrade someone else does.
    BeforeUpgrade,
    /// Verify, rewrite, verify and remove what run `resumes` kept.
    AfterUpgrade { resumes: String },
}

/// `--phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseFlag {
    BeforeUpgrade,
    AfterUpgrade,
}

impl Phase {
    /// The phase from `--phase`, `--resume` and `--platform`; `Err` is the one line for exit 2.
    pub fn from_flags(
        phase: Option<PhaseFlag>,
        resume: Option<&str>,
        platform: PlatformKind,
    ) -> Result<Phase, String> {
        let chosen = match (phase, resume) {
            (None, None) => return Ok(Phase::Whole),
            (None, Some(_)) | (Some(PhaseFlag::BeforeUpgrade), Some(_)) => {
                return Err(
                    "--resume RUN_ID goes with --phase after-upgrade (it names the --phase before-upgrade run to finish)"
                        .into(),
                );
            }
            (Some(PhaseFlag::AfterUpgrade), None) => {
                return Err(
                    "--phase after-upgrade needs --resume RUN_ID: the run id the --phase before-upgrade run printed"
                        .into(),
                );
            }
            (Some(PhaseFlag::BeforeUpgrade), None) => Phase::BeforeUpgrade,
            (Some(PhaseFlag::AfterUpgrade), Some(r)) => {
                if r.len() != 8
                    || !r
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(format!(
                        "--resume {r:?}: a run id is 8 lowercase hex digits, as printed by the --phase before-upgrade run and in its result file's name"
                    ));
                }
                Phase::AfterUpgrade {
                    resumes: r.to_string(),
                }
            }
        };
        if platform != PlatformKind::Kubernetes {
            return Err(format!(
                "--phase {}: split phases keep volumes in a cluster between two runs, so they need --platform kubernetes (on the local platform, `upgrade.command` runs the upgrade inside one run)",
                chosen.name().unwrap_or_default()
            ));
        }
        Ok(chosen)
    }

    /// `before-upgrade`, `after-upgrade`; `None` for a whole run.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Phase::Whole => None,
            Phase::BeforeUpgrade => Some("before-upgrade"),
            Phase::AfterUpgrade { .. } => Some("after-upgrade"),
        }
    }

    /// The run an after-upgrade run finishes.
    pub fn resumes(&self) -> Option<&str> {
        match self {
            Phase::AfterUpgrade { resumes } => Some(resumes),
            _ => None,
        }
    }

    pub fn is_split(&self) -> bool {
        *self != Phase::Whole
    }
}

/// What the resume command needs to reach the same cluster with the same classes.
pub struct ResumeContext<'a> {
    /// `--platform …` and the flags that reach the same platform again
    /// ([`crate::platform::select::Choice::resume_args`]).
    pub platform_args: Vec<String>,
    /// The class files as given (`--classes`); empty for the built-in default.
    pub class_files: &'a [String],
    pub profile: &'a str,
    pub results: &'a Path,
}

/// `pvcheck run … --phase after-upgrade --resume RUN_ID`: the command that finishes `run_id`,
/// with the cluster, image and class flags of this run (no filter: the after-upgrade run
/// resumes every class that was kept).
pub fn resume_command(run_id: &str, c: &ResumeContext<'_>) -> String {
    let mut args: Vec<String> = vec!["pvcheck".into(), "run".into()];
    args.extend(c.platform_args.iter().cloned());
    let mut flag = |name: &str, value: String| {
        args.push(name.into());
        args.push(value);
    };
    for f in c.class_files {
        flag("--classes", f.clone());
    }
    if c.profile != "quick" {
        flag("--profile", c.profile.to_string());
    }
    if c.results != Path::new("results") {
        flag("--results", c.results.display().to_string());
    }
    flag("--phase", "after-upgrade".into());
    flag("--resume", run_id.into());
    args.iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as one shell word: unchanged when it is plain, else in single quotes.
fn shell_word(a: &str) -> String {
    let plain = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// The result file of run `run_id` under `results` (`runs/<timestamp>-<run id>.json`), if there.
pub fn result_file_of(results: &Path, run_id: &str) -> Option<PathBuf> {
    let suffix = format!("-{run_id}.json");
    std::fs::read_dir(results.join("runs"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .max()
}

/// `--resume RUN_ID` of a run that an after-upgrade run under `results` already resumed: the one
/// line that says by which run, when, and where its result is. (That run took the namespace
/// over before its first trial and removed it at its end, so the cluster alone can only say
/// that nothing waits.)
pub fn already_resumed(results: &Path, resumes: &str) -> Option<String> {
    let mut found: Vec<(String, String, PathBuf)> = std::fs::read_dir(results.join("runs"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            let phase = doc.get("phase")?;
            if phase.get("name")?.as_str()? != "after-upgrade"
                || phase.get("resumes")?.as_str()? != resumes
            {
                return None;
            }
            Some((
                doc.get("start")?.as_str()?.to_string(),
                doc.get("run_id")?.as_str()?.to_string(),
                p.clone(),
            ))
        })
        .collect();
    found.sort();
    let (at, by, file) = found.into_iter().next()?;
    Some(format!(
        "--resume {resumes}: run {resumes} was already resumed by run {by} at {at} (result file {}); that run verified, rewrote and removed its volumes, so there is nothing left to resume",
        file.display()
    ))
}

/// The result file's `phase` object: which phase, and the link to the other run (the command
/// that resumes this one, or the run it resumed and that run's result file when it is here).
pub fn record(phase: &Phase, run_id: &str, c: &ResumeContext<'_>) -> Option<serde_json::Value> {
    match phase {
        Phase::Whole => None,
        Phase::BeforeUpgrade => Some(serde_json::json!({
            "name": "before-upgrade",
            "resume_with": resume_command(run_id, c),
        })),
        Phase::AfterUpgrade { resumes } => Some(serde_json::json!({
            "name": "after-upgrade",
            "resumes": resumes,
            "resumed_result": result_file_of(c.results, resumes).map(|p| p.display().to_string()),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_wrong_combination_of_phase_and_resume_is_one_line_naming_the_flag() {
        let k = PlatformKind::Kubernetes;
        let e = Phase::from_flags(Some(PhaseFlag::AfterUpgrade), None, k).unwrap_err();
        assert!(e.starts_with("--phase after-upgrade needs --resume"), "{e}");
        let e = Phase::from_flags(None, Some("0123abcd"), k).unwrap_err();
        assert!(e.starts_with("--resume RUN_ID goes with"), "{e}");
        let e = Phase::from_flags(Some(PhaseFlag::BeforeUpgrade), Some("0123abcd"), k).unwrap_err();
        assert!(e.starts_with("--resume RUN_ID goes with"), "{e}");
        for bad in ["0123ABCD", "0123abc", "../../etc", "0123abcde"] {
            let e = Phase::from_flags(Some(PhaseFlag::AfterUpgrade), Some(bad), k).unwrap_err();
            assert!(e.contains("8 lowercase hex digits"), "{bad}: {e}");
        }
        let e = Phase::from_flags(Some(PhaseFlag::BeforeUpgrade), None, PlatformKind::Local)
            .unwrap_err();
        assert!(e.contains("need --platform kubernetes"), "{e}");
        assert_eq!(
            Phase::from_flags(None, None, PlatformKind::Local),
            Ok(Phase::Whole)
        );
        assert_eq!(
            Phase::from_flags(Some(PhaseFlag::AfterUpgrade), Some("0123abcd"), k),
            Ok(Phase::AfterUpgrade {
                resumes: "0123abcd".into()
            })
        );
    }

    /// Resuming a run twice said "no run … waits … removed by pvcheck cleanup, or … kept
    /// nothing"; the result file of the run that resumed it says who and when.
    #[test]
    fn resuming_a_run_already_resumed_names_the_run_the_time_and_its_result_file() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        std::fs::create_dir(&runs).unwrap();
        assert_eq!(already_resumed(dir.path(), "0123abcd"), None);
        std::fs::write(
            runs.join("20261205T100000Z-99999999.json"),
            r#"{"run_id": "99999999", "start": "2026-12-05T10:00:00Z", "phase": {"name": "after-upgrade", "resumes": "feedbeef"}}"#,
        )
        .unwrap();
        std::fs::write(runs.join("garbage.json"), "{not json").unwrap();
        assert_eq!(already_resumed(dir.path(), "0123abcd"), None);
        let file = runs.join("20261205T110000Z-4567cdef.json");
        std::fs::write(
            &file,
            r#"{"run_id": "4567cdef", "start": "2026-12-05T11:00:00Z", "phase": {"name": "after-upgrade", "resumes": "0123abcd"}}"#,
        )
        .unwrap();
        let line = already_resumed(dir.path(), "0123abcd").unwrap();
        assert!(
            line.contains("already resumed by run 4567cdef at 2026-12-05T11:00:00Z")
                && line.contains(&format!("(result file {})", file.display())),
            "{line}"
        );
    }

    /// The printed command is pasted into another pipeline: a path with a space must stay one word.
    #[test]
    fn the_resume_command_keeps_the_cluster_and_class_flags_as_shell_words() {
        let platform_args = [
            "--platform",
            "kubernetes",
            "--kubeconfig",
            "/etc/kube/my config",
            "--agent-image",
            "reg.example/pvcheck/agent:1",
        ]
        .map(String::from)
        .to_vec();
        let files = vec!["classes/gp3.yaml".to_string()];
        let c = ResumeContext {
            platform_args,
            class_files: &files,
            profile: "standard",
            results: Path::new("results"),
        };
        assert_eq!(
            resume_command("0123abcd", &c),
            "pvcheck run --platform kubernetes --kubeconfig '/etc/kube/my config' --agent-image reg.example/pvcheck/agent:1 --classes classes/gp3.yaml --profile standard --phase after-upgrade --resume 0123abcd"
        );
    }
}
