//! `pvcheck image export`: the agent's OCI image archive, or with `--runner` the image of
//! pvcheck itself that the nightly CronJob runs, without Docker (see [`oci`]).

pub mod oci;
pub mod tar;

use std::path::{Path, PathBuf};

use crate::exit_code;

/// The target triple a static build of this machine's architecture uses.
fn triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// The command that builds a static `package` for this machine.
pub fn static_build_command(package: &str) -> String {
    format!(
        "RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p {package} --target {}",
        triple()
    )
}

fn is_static(p: &Path) -> bool {
    std::fs::read(p)
        .ok()
        .and_then(|b| oci::elf_facts(&b).ok())
        .is_some_and(|(s, _)| s)
}

/// Where a static agent built with this pvcheck is: `pvcheck-agent` beside it, or in the static
/// target directory of the same cargo `target/` (`target/<triple>/{release,debug}/`), or this
/// pvcheck itself when it is static (its `pvcheck agent …` is the agent, and it answers to the
/// name `pvcheck-agent`). Dynamically linked candidates are passed over; the error names them.
fn agent_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find pvcheck itself: {e}"))?;
    let mut candidates = vec![me.with_file_name("pvcheck-agent")];
    // target/debug/pvcheck or target/<triple>/release/pvcheck: the cargo target directory.
    for up in [
        me.parent().and_then(Path::parent),
        me.parent().and_then(Path::parent).and_then(Path::parent),
    ]
    .into_iter()
    .flatten()
    {
        for profile in ["release", "debug"] {
            candidates.push(up.join(triple()).join(profile).join("pvcheck-agent"));
        }
    }
    candidates.dedup();
    if let Some(found) = candidates.iter().find(|p| is_static(p)) {
        return Ok(found.clone());
    }
    if is_static(&me) {
        return Ok(me);
    }
    let dynamic: Vec<String> = candidates
        .iter()
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    Err(format!(
        "no statically linked pvcheck-agent found{} (looked beside {} and in its target directory's {}/): build it with `{}`, or give --agent PATH",
        if dynamic.is_empty() {
            String::new()
        } else {
            format!(" ({} is dynamically linked)", dynamic.join(", "))
        },
        me.display(),
        triple(),
        static_build_command("pvcheck-workloads"),
    ))
}

/// The image agent pods run when `--agent-image` is not given (`pvcheck image export` writes it).
pub fn default_agent_image() -> String {
    format!("docker.io/pvcheck/agent:{}", env!("CARGO_PKG_VERSION"))
}

/// The default name of the image: the agent's or the runner's, at this version.
pub fn default_reference(kind: oci::Kind) -> String {
    match kind {
        oci::Kind::Agent => default_agent_image(),
        oci::Kind::Runner => format!("docker.io/pvcheck/pvcheck:{}", env!("CARGO_PKG_VERSION")),
    }
}

/// Runs `pvcheck image export`; returns the exit code.
pub fn export_main(out: PathBuf, agent: Option<PathBuf>, tag: Option<String>, runner: bool) -> u8 {
    let kind = if runner {
        oci::Kind::Runner
    } else {
        oci::Kind::Agent
    };
    let path = if runner {
        if agent.is_some() {
            eprintln!(
                "pvcheck: image export: --agent has no meaning with --runner (the runner image holds this pvcheck, whose agent is built in)"
            );
            return exit_code::USAGE;
        }
        match std::env::current_exe() {
            Ok(me) if is_static(&me) => me,
            Ok(me) => {
                eprintln!(
                    "pvcheck: image export --runner: {} is dynamically linked and the image has no libc: build pvcheck static with `{}` and run target/{}/release/pvcheck image export --runner",
                    me.display(),
                    static_build_command("pvcheck"),
                    triple()
                );
                return exit_code::USAGE;
            }
            Err(e) => {
                eprintln!("pvcheck: image export --runner: cannot find pvcheck itself: {e}");
                return exit_code::USAGE;
            }
        }
    } else {
        match agent_path(agent) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pvcheck: image export: {e}");
                return exit_code::USAGE;
            }
        }
    };
    let flag = if runner { "--runner" } else { "--agent" };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pvcheck: image export: {flag} {}: {e}", path.display());
            return exit_code::USAGE;
        }
    };
    let (is_static, arch) = match oci::elf_facts(&bytes) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pvcheck: image export: {flag} {}: {e}", path.display());
            return exit_code::USAGE;
        }
    };
    if !is_static {
        eprintln!(
            "pvcheck: image export: --agent {}: dynamically linked; the image has no libc, build it static: {}",
            path.display(),
            static_build_command("pvcheck-workloads")
        );
        return exit_code::USAGE;
    }
    let reference = tag.unwrap_or_else(|| default_reference(kind));
    let tmp = out.with_extension("tar.partial");
    let written = std::fs::File::create(&tmp)
        .map(std::io::BufWriter::new)
        .and_then(|f| {
            let w = oci::write(
                &oci::ImageSpec {
                    kind,
                    agent: &bytes,
                    arch,
                    reference: &reference,
                    version: env!("CARGO_PKG_VERSION"),
                },
                f,
            )?;
            std::fs::rename(&tmp, &out)?;
            Ok(w)
        });
    match written {
        Ok(w) => {
            let usage = if runner {
                format!("set it as the CronJob's image (deploy/: `images:` of your overlay)")
            } else {
                format!("run with --agent-image {reference}")
            };
            println!(
                "wrote {} ({reference}, {arch}, manifest {}, layer {} bytes); import with `ctr -n k8s.io images import {}` and {usage}",
                out.display(),
                w.manifest_digest,
                w.layer_bytes,
                out.display()
            );
            exit_code::OK
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("pvcheck: image export: --out {}: {e}", out.display());
            exit_code::USAGE
        }
    }
}
