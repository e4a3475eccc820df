//! Synthetic run documents (schema 1) with a chosen speed and noise: for the snapshot tests,
//! the end-to-end tests of `compare` and the benchmark, where real runs would be slow and
//! never the same twice. The shape is what `pvcheck run` writes; only fields the comparison
//! and the reports read are filled in.

use pvcheck_workloads::speed::latency::LatencyHistogram;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Value, json};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub run_id: String,
    pub start: String,
    pub classes: Vec<String>,
    /// Workload names of the standard matrix.
    pub workloads: Vec<String>,
    pub repetitions: usize,
    /// Multiplies every rate and divides every latency (0.9: 10 % slower).
    pub speed: f64,
    /// Relative standard deviation between repetitions (0.02: 2 %).
    pub noise: f64,
    pub seed: u64,
    /// Mount options recorded for every class's volume (the fingerprint sees them).
    pub mount_options: Vec<String>,
    /// Encode a latency histogram per repetition (the HTML's percentile curves need them).
    pub histograms: bool,
    /// The `thresholds.assumed_noise` recorded for every class. 0 by default: a synthetic run's
    /// only noise is `noise`, with no drift between runs (the real default is 12 %).
    pub assumed_noise: f64,
}

impl Spec {
    pub fn new(run_id: &str, classes: usize, workloads: usize, repetitions: usize) -> Self {
        Spec {
            run_id: run_id.into(),
            start: "2026-11-27T03:45:00Z".into(),
            classes: (0..classes).map(|i| format!("class-{i}")).collect(),
            workloads: pvcheck_workloads::speed::matrix::NAMES
                .iter()
                .take(workloads)
                .map(|s| s.to_string())
                .collect(),
            repetitions,
            speed: 1.0,
            noise: 0.02,
            seed: 1,
            mount_options: Vec::new(),
            histograms: false,
            assumed_noise: 0.0,
        }
    }
}

fn gauss(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let v = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn latency(p50: f64, p99: f64, p999: f64) -> Value {
    json!({ "mean": p50 * 1.1, "min": (p50 / 3.0) as u64, "p50": p50 as u64, "p90": (p50 * 1.6) as u64,
            "p99": p99 as u64, "p999": p999 as u64, "p9999": (p999 * 2.0) as u64, "max": (p999 * 4.0) as u64 })
}

fn histogram(p50: f64, p99: f64) -> String {
    let mut h = LatencyHistogram::new();
    for i in 0..1000u64 {
        let q = i as f64 / 1000.0;
        let v = if q < 0.5 {
            p50 * (0.5 + q)
        } else {
            p50 + (p99 - p50) * ((q - 0.5) / 0.49).powi(3)
        };
        h.record(v.max(1.0) as u64);
    }
    h.encode()
}

/// One repetition's bench JSON.
fn bench(w: &str, speed: f64, hist: bool) -> Value {
    let job = pvcheck_workloads::speed::matrix::workload(
        pvcheck_workloads::speed::matrix::Profile::Quick,
        w,
    )
    .map(|w| serde_json::to_value(w.job).unwrap_or(Value::Null))
    .unwrap_or(Value::Null);
    let bs = job["bs"].as_f64().unwrap_or(4096.0);
    let qd = job["iodepth"].as_f64().unwrap_or(1.0);
    let iops = if bs >= 65536.0 {
        2000.0
    } else {
        20_000.0 * qd.sqrt()
    } * speed;
    let p50 = 1e9 * qd / iops;
    let (p99, p999) = (p50 * 3.0, p50 * 8.0);
    let mut b = json!({
        "schema": "pvcheck.bench/1", "status": "ok", "workload": w, "profile": "quick", "job": job,
        "target": { "kind": "dir", "path": "/synthetic" }, "engine": "uring", "direct": true,
        "runtime_s": 1.0, "io_count": iops as u64, "bytes": (iops * bs) as u64, "iops": iops, "bw_bytes": iops * bs,
        "lat_ns": latency(p50, p99, p999), "histogram_encoding": "hdrhistogram-v2-deflate-base64",
        "qd_achieved": qd * 0.99, "cv": 0.02, "sample_interval_s": 0.5, "iops_samples": [iops, iops],
        "warnings": [], "seed": 1,
    });
    if hist {
        b["histogram"] = json!(histogram(p50, p99));
    }
    if w == "metadata" {
        let op = |r: f64| json!({ "count": r as u64, "ops_per_s": r, "lat_ns": latency(1e9 / r, 3e9 / r, 8e9 / r) });
        b["metadata"] = json!({ "create": op(14000.0 * speed), "stat": op(60000.0 * speed),
                                 "rename": op(15000.0 * speed), "unlink": op(16000.0 * speed) });
    }
    b
}

/// Scales every figure of a bench JSON by `f` (rates up, latencies down).
fn scale(b: &mut Value, f: f64) {
    for k in ["iops", "bw_bytes"] {
        if let Some(v) = b[k].as_f64() {
            b[k] = json!(v * f);
        }
    }
    for k in ["p50", "p90", "p99", "p999", "p9999"] {
        if let Some(v) = b["lat_ns"][k].as_f64() {
            b["lat_ns"][k] = json!((v / f) as u64);
        }
    }
    if let Some(md) = b.get_mut("metadata").and_then(Value::as_object_mut) {
        for op in md.values_mut() {
            if let Some(v) = op["ops_per_s"].as_f64() {
                op["ops_per_s"] = json!(v * f);
            }
        }
    }
}

/// The run document.
pub fn run(spec: &Spec) -> Value {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed);
    let mut trials = Vec::new();
    let mut classes = serde_json::Map::new();
    for c in &spec.classes {
        classes.insert(
            c.clone(),
            json!({
                "parameters": { "name": c, "local": { "loop": { "fs": "ext4", "size": "512MiB", "mkfs_options": [], "mount_options": spec.mount_options } } },
                "volume": { "kind": "loop", "fs": "ext4", "size_bytes": 536870912u64, "mount_options": spec.mount_options },
                "thresholds": crate::config::thresholds::Thresholds {
                    class: crate::config::thresholds::Limits {
                        assumed_noise: spec.assumed_noise,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            }),
        );
        trials.push(json!({ "name": format!("{c}::integrity::recreate"), "class": c, "check": "integrity::recreate",
                            "status": "passed", "duration_s": 1.5, "metrics": {} }));
        for w in &spec.workloads {
            let reps: Vec<Value> = (0..spec.repetitions)
                .map(|_| {
                    let mut b = bench(w, spec.speed, spec.histograms);
                    // Independent noise per figure, as real repetitions have.
                    let f = (1.0 + spec.noise * gauss(&mut rng)).max(0.01);
                    scale(&mut b, f);
                    json!({ "volume": { "kind": "loop", "fs": "ext4", "size_bytes": 536870912u64, "mount_options": spec.mount_options }, "seconds": 1.6, "bench": b })
                })
                .collect();
            trials.push(json!({
                "name": format!("{c}::speed::{w}"), "class": c, "check": format!("speed::{w}"),
                "status": "passed", "duration_s": 1.6 * spec.repetitions as f64,
                "metrics": { "bench": reps.first().map(|r| r["bench"].clone()), "repetitions": reps },
            }));
        }
    }
    json!({
        "schema_version": 1, "run_id": spec.run_id, "seed": spec.seed, "start": spec.start, "end": spec.start,
        "interrupted": false, "platform": "local", "profile": "quick",
        "environment": { "platform": "local", "node": "synthetic", "kernel": "6.1.0-synthetic",
                         "pvcheck_version": "0.1.0", "agent_version": "pvcheck-agent 0.1.0", "classes": classes },
        "trials": trials, "kept": [], "timing": {},
    })
}
