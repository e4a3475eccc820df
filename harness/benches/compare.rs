//! `cargo bench -p pvcheck --bench compare`: `pvcheck compare` of two runs with 9 workloads ×
//! 5 classes × 10 repetitions each (synthetic run files), bootstrap included (issue 12: under
//! 2 s). Prints the figure and its ratio to the target; it asserts nothing (a shared machine's
//! timing is evidence, not a verdict).

use std::time::Instant;

use pvcheck::compare::synthetic::{Spec, run};
use pvcheck::compare::{self, RunDoc};

const TARGET_S: f64 = 2.0;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().join("base.json");
    let new = dir.path().join("new.json");
    let spec = |id: &str, seed: u64, speed: f64| Spec {
        seed,
        speed,
        histograms: true,
        ..Spec::new(id, 5, 9, 10)
    };
    std::fs::write(&base, run(&spec("base0001", 1, 1.0)).to_string()).expect("write");
    std::fs::write(&new, run(&spec("new00002", 2, 0.97)).to_string()).expect("write");
    let size = std::fs::metadata(&new).map(|m| m.len()).unwrap_or(0);

    // The library: read both files, judge every comparison (Hodges–Lehmann with exact bounds).
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = compare::compare(
            RunDoc::read(&base).expect("base"),
            RunDoc::read(&new).expect("new"),
            false,
        )
        .expect("compare");
        times.push(t.elapsed().as_secs_f64());
        n = r.comparisons.len();
    }
    times.sort_by(f64::total_cmp);
    let lib = times[times.len() / 2];

    // The binary, end to end, with every report written.
    let exe = env!("CARGO_BIN_EXE_pvcheck");
    let mut bin_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = std::process::Command::new(exe)
            .arg("compare")
            .arg(&base)
            .arg(&new)
            .args(["--results", dir.path().to_str().unwrap_or(".")])
            .arg("--html")
            .arg(dir.path().join("r.html"))
            .arg("--junit")
            .arg(dir.path().join("r.xml"))
            .arg("--markdown")
            .arg(dir.path().join("r.md"))
            .arg("--prometheus")
            .arg(dir.path().join("r.prom"))
            .output()
            .expect("run pvcheck");
        bin_times.push(t.elapsed().as_secs_f64());
        assert!(
            matches!(out.status.code(), Some(0 | 3 | 4)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin_times.sort_by(f64::total_cmp);
    let bin = bin_times[bin_times.len() / 2];
    println!(
        "compare: 5 classes x 9 workloads x 10 repetitions per side ({n} comparisons, exact Hodges–Lehmann intervals, run file {:.1} MB)",
        size as f64 / 1e6
    );
    println!(
        "  library (read + judge), median of 5: {lib:.3} s = {:.2} of the {TARGET_S} s target",
        lib / TARGET_S
    );
    println!(
        "  `pvcheck compare` with all four reports, median of 3: {bin:.3} s = {:.2} of the target",
        bin / TARGET_S
    );
}
