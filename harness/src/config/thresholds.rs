//! `thresholds:` in a class file: how large a change the regression gate calls a regression,
//! per class and per workload (issue 12).
//!
//! ```yaml
//! thresholds:
//!   iops: -5%          # IOPS of the 4 KiB workloads; a drop larger than this regresses
//!   bandwidth: -5%     # MB/s of the 1 MiB workloads
//!   p99: +10%          # completion latency p99; a rise larger than this regresses
//!   p999: +20%
//!   fsync_p99: +10%    # fdatasync latency p99 of fsync-latency
//!   metadata: -5%      # create, stat, rename and unlink rates
//!   max_cv: 10%        # a repetition whose IOPS varied more than this within its run is invalid
//!   min_qd: 90%        # … or that kept fewer I/Os in flight than this share of its queue depth
//!   max_cpu_wait: 10%  # latencies: a side whose agent waited this much longer for a CPU is not judged
//!   assumed_noise: 12% # run-to-run σ assumed until history measures it: "regressed" needs 3σ
//!   workloads:
//!     randwrite-4k-qd1: { p99: +25% }
//! ```
//!
//! Every value is a percentage with a `%` (a bare number is refused, as sizes without a unit
//! are). Rates may be written `-5%` or `5%`, latencies `+10%` or `10%`; the other sign is an
//! error, since it would mean "an improvement regresses". What is not given takes the default
//! above; a workload's entry overrides its class's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A percentage as written in the file: `-5%`, `+10%`, `12.5%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent {
    /// The value in percent, with its sign.
    pub value: f64,
    /// Whether a sign was written (`+` or `-`).
    pub signed: bool,
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit: write a percentage such as {n}%"
            ))),
            Raw::Text(s) => parse_percent(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `-5%`, `+10%`, `12.5%` (spaces around the number allowed).
pub fn parse_percent(s: &str) -> Result<Percent, String> {
    let t = s.trim();
    let Some(num) = t.strip_suffix('%') else {
        return Err(format!(
            "{s:?} is not a percentage: write it like -5% or +10%"
        ));
    };
    let num = num.trim();
    let signed = num.starts_with('+') || num.starts_with('-');
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage: write it like -5% or +10%"))?;
    if !value.is_finite() {
        return Err(format!("{s:?} is not a finite percentage"));
    }
    Ok(Percent { value, signed })
}

/// Limits as written, for a class or one workload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default)]
    pub iops: Option<Percent>,
    #[serde(default)]
    pub bandwidth: Option<Percent>,
    #[serde(default)]
    pub p99: Option<Percent>,
    #[serde(default)]
    pub p999: Option<Percent>,
    #[serde(default)]
    pub fsync_p99: Option<Percent>,
    #[serde(default)]
    pub metadata: Option<Percent>,
    #[serde(default)]
    pub max_cv: Option<Percent>,
    #[serde(default)]
    pub min_qd: Option<Percent>,
    #[serde(default)]
    pub max_cpu_wait: Option<Percent>,
    #[serde(default)]
    pub assumed_noise: Option<Percent>,
}

/// The `thresholds:` section of a class.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsSpec {
    #[serde(default)]
    pub iops: Option<Percent>,
    #[serde(default)]
    pub bandwidth: Option<Percent>,
    #[serde(default)]
    pub p99: Option<Percent>,
    #[serde(default)]
    pub p999: Option<Percent>,
    #[serde(default)]
    pub fsync_p99: Option<Percent>,
    #[serde(default)]
    pub metadata: Option<Percent>,
    #[serde(default)]
    pub max_cv: Option<Percent>,
    #[serde(default)]
    pub min_qd: Option<Percent>,
    #[serde(default)]
    pub max_cpu_wait: Option<Percent>,
    #[serde(default)]
    pub assumed_noise: Option<Percent>,
    /// Per workload of the standard matrix (`randread-4k-qd64`, …).
    #[serde(default)]
    pub workloads: BTreeMap<String, LimitsSpec>,
}

impl ThresholdsSpec {
    fn class_level(&self) -> LimitsSpec {
        LimitsSpec {
            iops: self.iops,
            bandwidth: self.bandwidth,
            p99: self.p99,
            p999: self.p999,
            fsync_p99: self.fsync_p99,
            metadata: self.metadata,
            max_cv: self.max_cv,
            min_qd: self.min_qd,
            max_cpu_wait: self.max_cpu_wait,
            assumed_noise: self.assumed_noise,
        }
    }

    /// Checks signs, ranges and workload names. Err: (field below `thresholds`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_limits(&self.class_level(), "")?;
        for (w, l) in &self.workloads {
            if !pvcheck_workloads::speed::matrix::NAMES.contains(&w.as_str()) {
                return Err((
                    format!("workloads.{w}"),
                    format!(
                        "no workload {w:?} in the speed matrix (it has {})",
                        pvcheck_workloads::speed::matrix::NAMES.join(", ")
                    ),
                ));
            }
            check_limits(l, &format!("workloads.{w}."))?;
        }
        Ok(())
    }

    /// Defaults, overridden by the class's values, overridden per workload.
    pub fn resolve(&self) -> Thresholds {
        let base = Limits::default().overridden(&self.class_level());
        Thresholds {
            workloads: self
                .workloads
                .iter()
                .map(|(w, l)| (w.clone(), base.overridden(l)))
                .collect(),
            class: base,
        }
    }
}

fn check_limits(l: &LimitsSpec, prefix: &str) -> Result<(), (String, String)> {
    let rates = [
        ("iops", l.iops),
        ("bandwidth", l.bandwidth),
        ("metadata", l.metadata),
    ];
    let latencies = [("p99", l.p99), ("p999", l.p999), ("fsync_p99", l.fsync_p99)];
    for (name, p) in rates {
        if let Some(p) = p {
            if p.value > 0.0 && p.signed {
                return Err((
                    format!("{prefix}{name}"),
                    format!(
                        "{name} regresses when it drops: write -{}% (or {}%)",
                        p.value, p.value
                    ),
                ));
            }
            if p.value == 0.0 || p.value.abs() >= 100.0 {
                return Err((
                    format!("{prefix}{name}"),
                    format!(
                        "{}% is not a usable threshold: give a drop between 0% and 100%",
                        p.value
                    ),
                ));
            }
        }
    }
    for (name, p) in latencies {
        if let Some(p) = p {
            if p.value < 0.0 {
                return Err((
                    format!("{prefix}{name}"),
                    format!(
                        "latency {name} regresses when it rises: write +{}% (or {}%)",
                        -p.value, -p.value
                    ),
                ));
            }
            if p.value == 0.0 {
                return Err((
                    format!("{prefix}{name}"),
                    "0% is not a usable threshold: every change would be beyond it".into(),
                ));
            }
        }
    }
    if let Some(p) = l.max_cv
        && (p.signed || p.value <= 0.0)
    {
        return Err((
            format!("{prefix}max_cv"),
            "max_cv is a positive percentage, without a sign".into(),
        ));
    }
    if let Some(p) = l.assumed_noise
        && (p.signed || p.value < 0.0 || p.value >= 100.0)
    {
        return Err((
            format!("{prefix}assumed_noise"),
            "assumed_noise is a percentage from 0% (off: the bare threshold) to below 100%, without a sign".into(),
        ));
    }
    for (name, p) in [("min_qd", l.min_qd), ("max_cpu_wait", l.max_cpu_wait)] {
        if let Some(p) = p
            && (p.signed || p.value <= 0.0 || p.value > 100.0)
        {
            return Err((
                format!("{prefix}{name}"),
                format!("{name} is a share between 0% and 100%, without a sign"),
            ));
        }
    }
    Ok(())
}

/// Resolved limits, as fractions (0.05 for 5 %); magnitudes, whatever the direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub iops: f64,
    pub bandwidth: f64,
    pub p99: f64,
    pub p999: f64,
    pub fsync_p99: f64,
    pub metadata: f64,
    /// A repetition whose within-run coefficient of variation of IOPS exceeds this is invalid.
    pub max_cv: f64,
    /// A repetition whose achieved queue depth is below this share of its target is invalid.
    pub min_qd: f64,
    /// Latency figures: when one side's agent waited for a CPU (schedstat) this share of the
    /// measured time longer than the other's, a verdict towards that side is not judged.
    /// (Rates take the difference into account in proportion; `compare::gate`.)
    pub max_cpu_wait: f64,
    /// The run-to-run σ (of a figure's log) assumed until the results' history measures it: the
    /// margin for "regressed" is at least [`crate::compare::gate::SIGMA_FACTOR`] times it. Two
    /// runs of one setup differ by more than their repetitions show (a fresh volume, the
    /// machine's other work); 0 judges against the bare threshold (docs/gate.md).
    pub assumed_noise: f64,
}

impl Default for Limits {
    /// The defaults of issue 12.
    fn default() -> Self {
        Self {
            iops: 0.05,
            bandwidth: 0.05,
            p99: 0.10,
            p999: 0.20,
            fsync_p99: 0.10,
            metadata: 0.05,
            max_cv: 0.10,
            min_qd: 0.90,
            max_cpu_wait: 0.10,
            assumed_noise: 0.12,
        }
    }
}

impl Limits {
    fn overridden(&self, l: &LimitsSpec) -> Limits {
        let f = |p: Option<Percent>, d: f64| p.map_or(d, |p| p.value.abs() / 100.0);
        Limits {
            iops: f(l.iops, self.iops),
            bandwidth: f(l.bandwidth, self.bandwidth),
            p99: f(l.p99, self.p99),
            p999: f(l.p999, self.p999),
            fsync_p99: f(l.fsync_p99, self.fsync_p99),
            metadata: f(l.metadata, self.metadata),
            max_cv: f(l.max_cv, self.max_cv),
            min_qd: f(l.min_qd, self.min_qd),
            max_cpu_wait: f(l.max_cpu_wait, self.max_cpu_wait),
            assumed_noise: f(l.assumed_noise, self.assumed_noise),
        }
    }
}

/// A class's resolved thresholds; recorded in the run file (`environment.classes.<class>.thresholds`)
/// so `pvcheck compare` judges with the limits the run was made with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    #[serde(flatten)]
    pub class: Limits,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub workloads: BTreeMap<String, Limits>,
}

impl Thresholds {
    pub fn for_workload(&self, workload: &str) -> Limits {
        self.workloads.get(workload).copied().unwrap_or(self.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ThresholdsSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_are_the_issues_numbers() {
        let t = ThresholdsSpec::default().resolve();
        let l = t.for_workload("randread-4k-qd64");
        assert_eq!(
            (
                l.iops,
                l.bandwidth,
                l.p99,
                l.p999,
                l.fsync_p99,
                l.metadata,
                l.max_cv,
                l.min_qd
            ),
            (0.05, 0.05, 0.10, 0.20, 0.10, 0.05, 0.10, 0.90)
        );
    }

    #[test]
    fn a_workload_entry_overrides_its_class_which_overrides_the_default() {
        let s = spec("iops: -8%\np99: 15%\nworkloads:\n  randwrite-4k-qd1: { p99: +30% }\n");
        s.validate().unwrap();
        let t = s.resolve();
        assert_eq!(t.for_workload("randread-4k-qd64").iops, 0.08);
        assert_eq!(t.for_workload("randread-4k-qd64").p99, 0.15);
        assert_eq!(t.for_workload("randwrite-4k-qd1").p99, 0.30);
        assert_eq!(t.for_workload("randwrite-4k-qd1").iops, 0.08);
        assert_eq!(t.for_workload("randwrite-4k-qd1").p999, 0.20);
    }

    /// "+5%" on a rate would read as "an improvement of 5 % is a regression".
    #[test]
    fn a_threshold_pointing_the_wrong_way_is_refused_with_its_field() {
        let e = spec("iops: +5%").validate().unwrap_err();
        assert_eq!(e.0, "iops");
        assert!(e.1.contains("-5%"), "{}", e.1);
        let e = spec("workloads:\n  metadata: { p99: -10% }")
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "workloads.metadata.p99");
        let e = spec("workloads:\n  randread: { p99: 10% }")
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "workloads.randread");
        assert!(e.1.contains("randread-4k-qd64"), "{}", e.1);
        let e = spec("max_cv: -3%").validate().unwrap_err();
        assert_eq!(e.0, "max_cv");
    }

    #[test]
    fn a_bare_number_or_an_unknown_key_is_refused() {
        let e = serde_saphyr::from_str::<ThresholdsSpec>("iops: 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no unit"), "{e}");
        let e = serde_saphyr::from_str::<ThresholdsSpec>("iopz: 5%")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        assert!(parse_percent("5 percent").is_err());
        assert_eq!(parse_percent(" -12.5% ").unwrap().value, -12.5);
    }

    /// Issue 19: without history two runs of one setup were called regressed 13 times in 28 on
    /// this machine; the assumed run-to-run noise is what holds that down until history knows.
    #[test]
    fn assumed_noise_defaults_to_twelve_percent_can_be_turned_off_and_refuses_a_sign() {
        assert_eq!(
            ThresholdsSpec::default().resolve().class.assumed_noise,
            0.12
        );
        let s = spec("assumed_noise: 0%\nworkloads:\n  metadata: { assumed_noise: 20% }\n");
        s.validate().unwrap();
        let t = s.resolve();
        assert_eq!(t.for_workload("randread-4k-qd1").assumed_noise, 0.0);
        assert_eq!(t.for_workload("metadata").assumed_noise, 0.20);
        let e = spec("assumed_noise: -5%").validate().unwrap_err();
        assert_eq!(e.0, "assumed_noise");
        let e = spec("workloads:\n  metadata: { assumed_noise: 100% }")
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "workloads.metadata.assumed_noise");
        // A run file written before the field existed reads with the default.
        let old: Limits = serde_json::from_str(r#"{"iops": 0.05}"#).unwrap();
        assert_eq!(old.assumed_noise, 0.12);
    }

    #[test]
    fn resolved_thresholds_survive_the_run_file() {
        let t = spec("bandwidth: -7%\nworkloads:\n  read-1m-qd16: { bandwidth: -9% }\n").resolve();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["bandwidth"], 0.07);
        assert_eq!(json["workloads"]["read-1m-qd16"]["bandwidth"], 0.09);
        let back: Thresholds = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
    }
}
