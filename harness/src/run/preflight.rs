//! What can be known before a run is checked before anything is created (exit 2, one line):
//! a result directory that cannot be written, an `upgrade.command` or `ready` script that does
//! not exist or is not executable, and a class too small for the selected profile. A run that
//! would fail on these after minutes of work, or report them as failed checks, stops here.

use std::path::{Path, PathBuf};

use crate::checks::Check;
use crate::config::{ClassSpec, LocalKind};
use crate::profile::Profile;

use super::Planned;

/// `512 MiB`, `4.5 GiB`: sizes for people.
pub fn human_size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (m, u) in UNITS {
        if n >= m {
            let v = n as f64 / m as f64;
            return if (v - v.round()).abs() < 0.05 {
                format!("{} {u}", v.round())
            } else {
                format!("{v:.1} {u}")
            };
        }
    }
    format!("{n} B")
}

/// `--results DIR`: the result file goes to `DIR/runs/`; whatever of that exists must be a
/// writable directory, and the rest must be creatable (its nearest existing ancestor writable).
pub fn results_dir(dir: &Path) -> Result<(), String> {
    let runs = dir.join("runs");
    let mut p: PathBuf = runs.clone();
    loop {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                return nix::unistd::access(
                    &p,
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                )
                .map_err(|e| {
                    format!(
                        "--results {}: cannot write the result file under {}: {}",
                        dir.display(),
                        p.display(),
                        std::io::Error::from_raw_os_error(e as i32)
                    )
                });
            }
            Ok(_) => {
                return Err(format!(
                    "--results {}: {} is not a directory (the result file goes to {}/<timestamp>-<run id>.json)",
                    dir.display(),
                    p.display(),
                    runs.display()
                ));
            }
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
                _ => p = PathBuf::from("."),
            },
        }
    }
}

/// The upgrade commands of classes whose `integrity::upgrade` will run: the program each runs
/// (`sh -c COMMAND`, in the class file's directory) must exist and be executable.
pub fn upgrade_commands(class: &ClassSpec, index: usize) -> Result<(), String> {
    let Some(u) = &class.upgrade else {
        return Ok(());
    };
    let cwd = class
        .file
        .parent()
        .filter(|d| d.is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    for (field, cmd) in [("command", &u.command), ("ready", &u.ready)] {
        let Some(cmd) = cmd else { continue };
        let Some(program) = first_program(cmd) else {
            continue;
        };
        let place = format!(
            "{}:{}: classes[{index}].upgrade.{field}",
            class.file.display(),
            class.line()
        );
        if program.contains('/') {
            let path = if Path::new(&program).is_absolute() {
                PathBuf::from(&program)
            } else {
                cwd.join(&program)
            };
            match std::fs::metadata(&path) {
                Err(_) => {
                    return Err(format!(
                        "{place}: {program} does not exist (looked for {}; commands run in the class file's directory)",
                        path.display()
                    ));
                }
                Ok(m) if !m.is_file() => {
                    return Err(format!(
                        "{place}: {program} is not a file ({})",
                        path.display()
                    ));
                }
                Ok(_) if nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() => {
                    return Err(format!(
                        "{place}: {program} is not executable: `chmod +x {}`, or write `sh {program}`",
                        path.display()
                    ));
                }
                Ok(_) => {}
            }
        } else {
            // Builtins (echo, test, exit) and programs on PATH, exactly as `sh -c` will see them.
            let found = std::process::Command::new("sh")
                .args(["-c", "command -v -- \"$1\" >/dev/null", "sh", &program])
                .current_dir(&cwd)
                .stdin(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err(format!(
                    "{place}: {program} is not a shell builtin nor a program on PATH (the command runs as `sh -c {cmd:?}`)"
                ));
            }
        }
    }
    Ok(())
}

/// The program a shell command line starts with: `./up.sh` in `FOO=1 ./up.sh --now; x`.
/// None when it starts with shell syntax this does not follow (subshells, quotes, variables).
fn first_program(cmd: &str) -> Option<String> {
    let first = cmd
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '|' | '&'))
        .filter(|w| !w.is_empty())
        .find(|w| !w.contains('=') || w.starts_with('='))?;
    if first.starts_with(['(', '{', '$', '"', '\'', '`', '!', '<', '>'])
        || matches!(
            first,
            "if" | "for" | "while" | "until" | "case" | "exec" | "set" | "cd"
        )
    {
        return None;
    }
    Some(first.to_string())
}

/// Room a class needs for the selected trials of this profile, and what for.
fn needed(
    profile: Profile,
    speed_size: Option<u64>,
    trials: &[&Planned],
) -> Option<(u64, &'static str)> {
    let integrity = profile.dataset_bytes() + profile.dataset_bytes() / 4 + (8 << 20);
    let speed = profile.speed_bytes_with(speed_size);
    trials
        .iter()
        .map(|p| match &p.check {
            Check::Speed(_) => (speed, "speed"),
            // provision asks for the largest volume of the profile.
            Check::Provision => {
                if speed >= integrity {
                    (speed, "speed")
                } else {
                    (integrity, "integrity")
                }
            }
            Check::Recreate
            | Check::OtherNode
            | Check::Durability
            | Check::Upgrade
            | Check::Expand
            | Check::Snapshot => (integrity, "integrity"),
            _ => (0, ""),
        })
        .max_by_key(|(n, _)| *n)
        .filter(|(n, _)| *n > 0)
}

/// What a loop image of `data` usable bytes must be: the filesystem takes its share (journal,
/// inode tables, reserved blocks), rounded up to 256 MiB.
fn image_for(data: u64) -> u64 {
    let raw = data + data / 16 + (32 << 20);
    raw.div_ceil(256 << 20) * (256 << 20)
}

/// A class smaller than the selected trials of the profile need fails with ENOSPC halfway;
/// say so now, with what to do.
pub fn class_size(
    class: &ClassSpec,
    profile: Profile,
    speed_size: Option<u64>,
    trials: &[&Planned],
) -> Result<(), String> {
    let Some((need, what)) = needed(profile, speed_size, trials) else {
        return Ok(());
    };
    let advice = if what == "speed" {
        "enlarge the class, or use --speed-size"
    } else {
        "enlarge the class, or use a smaller --profile"
    };
    match &class.local {
        Some(LocalKind::Loop(l)) => {
            let want = image_for(need);
            if l.size.bytes() < want {
                return Err(format!(
                    "class {} is {}; profile {} needs {} for {what}: {advice} ({}:{}: local.loop.size)",
                    class.name(),
                    human_size(l.size.bytes()),
                    profile.name(),
                    human_size(want),
                    class.file.display(),
                    class.line()
                ));
            }
        }
        Some(LocalKind::Dir(d)) => {
            let dir = &d.value;
            let probe = if dir.is_dir() {
                dir.as_path()
            } else {
                dir.parent().unwrap_or(dir)
            };
            if let Ok(st) = nix::sys::statvfs::statvfs(probe)
                && st.blocks() > 0
            {
                let avail = st.blocks_available() * st.fragment_size();
                if avail < need {
                    return Err(format!(
                        "class {}: {} has {} free; profile {} needs {} for {what}: free space there, or use {}",
                        class.name(),
                        probe.display(),
                        human_size(avail),
                        profile.name(),
                        human_size(need),
                        if what == "speed" {
                            "--speed-size"
                        } else {
                            "a smaller --profile"
                        }
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every check above, for the trials that will do work.
pub fn check(
    classes: &[ClassSpec],
    planned: &[Planned],
    selected: &[usize],
    profile: Profile,
    speed_size: Option<u64>,
    results: &Path,
) -> Result<(), String> {
    results_dir(results)?;
    for (index, class) in classes.iter().enumerate() {
        let trials: Vec<&Planned> = selected
            .iter()
            .map(|&i| &planned[i])
            .filter(|p| p.ignore.is_none() && p.class.name() == class.name())
            .collect();
        if trials.is_empty() {
            continue;
        }
        if trials
            .iter()
            .any(|p| p.check == Check::Upgrade || p.check == Check::LiveUpgrade)
        {
            upgrade_commands(class, index)?;
        }
        class_size(class, profile, speed_size, &trials)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_of_a_command_line_is_found_past_assignments() {
        assert_eq!(first_program("./up.sh --now").as_deref(), Some("./up.sh"));
        assert_eq!(
            first_program("FOO=1 ./up.sh; x").as_deref(),
            Some("./up.sh")
        );
        assert_eq!(
            first_program("echo hi >&2; exit 3").as_deref(),
            Some("echo")
        );
        assert_eq!(first_program("(cd x && ./y)"), None);
        assert_eq!(first_program("  "), None);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(512 << 20), "512 MiB");
        assert_eq!(human_size((4 << 30) + (512 << 20)), "4.5 GiB");
        assert_eq!(human_size(100), "100 B");
    }

    /// The built-in 512 MiB loop classes hold the quick profile, not the standard one.
    #[test]
    fn a_loop_image_must_hold_the_data_and_the_filesystem() {
        assert!(image_for(Profile::Quick.speed_bytes()) <= 512 << 20);
        assert!(image_for(Profile::Standard.speed_bytes()) > 4 << 30);
    }
}
