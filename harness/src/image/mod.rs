//! `pvcheck image export`: the agent's OCI image archive, without Docker (see [`oci`]).

pub mod oci;
pub mod tar;

use std::path::PathBuf;

use crate::exit_code;

/// The agent binary to put in the image: `--agent`, else `pvcheck-agent` beside this binary.
fn agent_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find pvcheck itself: {e}"))?;
    let beside = me.with_file_name("pvcheck-agent");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no pvcheck-agent beside {} (build it: cargo build --release -p pvcheck-workloads), or give --agent PATH",
            me.display()
        ))
    }
}

/// Runs `pvcheck image export`; returns the exit code.
pub fn export_main(out: PathBuf, agent: Option<PathBuf>, tag: Option<String>) -> u8 {
    let path = match agent_path(agent) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pvcheck: image export: {e}");
            return exit_code::USAGE;
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pvcheck: image export: --agent {}: {e}", path.display());
            return exit_code::USAGE;
        }
    };
    let (is_static, arch) = match oci::elf_facts(&bytes) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pvcheck: image export: --agent {}: {e}", path.display());
            return exit_code::USAGE;
        }
    };
    if !is_static {
        eprintln!(
            "pvcheck: image export: --agent {}: dynamically linked; the image has no libc, build it static: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p pvcheck-workloads --target x86_64-unknown-linux-gnu",
            path.display()
        );
        return exit_code::USAGE;
    }
    let reference = tag.unwrap_or_else(crate::platform::kube::default_agent_image);
    let tmp = out.with_extension("tar.partial");
    let written = std::fs::File::create(&tmp)
        .map(std::io::BufWriter::new)
        .and_then(|f| {
            let w = oci::write(
                &oci::ImageSpec {
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
            println!(
                "wrote {} ({reference}, {arch}, manifest {}, layer {} bytes); import with `ctr -n k8s.io images import {}` and run with --agent-image {reference}",
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
