//! `pvcheck history`: change points in the nightly history of a results directory (issue 19).
//!
//! Every run file of `<results>/runs` is read (files that are not runs are skipped with one
//! warning each); per class × workload × figure (the figures of [`super::metrics`]) a run
//! gives one point, the median of its repetitions, and the points are ordered by the runs'
//! start times. Only like is compared with like: where the fingerprint of a (class, workload)
//! ([`super::fingerprint`]: kernel, agent, class parameters, volume, job, …) changes, a new
//! **epoch** starts, named with its differences. Change points are searched in each epoch with
//! E-Divisive means on the log of the points ([`crate::stats::edivisive`]); only the newest
//! epoch is judged, since a step across a setup change says nothing about the driver.
//!
//! The judgement of a series, on the newest epoch:
//! - **not judged** when the epoch has fewer runs than [`edivisive::min_judgeable_len`] (11):
//!   no step of the minimum segment's length could be significant yet;
//! - **regressed** when the newest segment is worse, in the figure's bad direction, than its
//!   reference by more than the class's threshold for that figure (the newest run's
//!   `thresholds`). The reference is the segment before the newest, or, when the newest
//!   segment ends a staircase of change points each for the worse, the segment the staircase
//!   started from (three steps of −4 % are a −12 % regression);
//! - **improved** when the newest segment is better than the one before it by more than the
//!   threshold;
//! - **stable** otherwise (no change point, or changes within the threshold).
//!
//! [`History::noise_sigma`] gives the run-to-run noise of a judged series for the comparison
//! gate: 1.4826 × MAD of the log points of the newest segment, when it has at least
//! [`NOISE_MIN_RUNS`] runs — and, while a setup has too few runs to look for change points,
//! of all its runs once they are that many.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::fingerprint::{self, Difference};
use super::metrics::{self, Metric};
use super::rundoc::RunDoc;
use crate::stats::edivisive::{self, Params};

/// How many of a series' newest runs `history` looks at by default (two months of nights).
pub const DEFAULT_LAST: usize = 60;
/// Fewest runs in the newest segment for [`History::noise_sigma`].
pub const NOISE_MIN_RUNS: usize = 6;

/// What to read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this class.
    pub class: Option<String>,
    /// Only this workload.
    pub workload: Option<String>,
    /// The newest runs per series (at least 2).
    pub last: usize,
    /// Read only the newest this many run files by name (names start with the UTC start
    /// time), to bound the work of a report; `None` reads them all.
    pub newest_files: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            class: None,
            workload: None,
            last: DEFAULT_LAST,
            newest_files: None,
        }
    }
}

/// Why the history cannot be read. Each displays as one line; [`HistoryError::flag`] says
/// which flag it is about.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}: no such directory")]
    NoDir(PathBuf),
    #[error("{0}: not a directory")]
    NotDir(PathBuf),
    #[error("{dir}: no runs directory (pvcheck run writes its result files to {runs})")]
    NoRunsDir { dir: PathBuf, runs: PathBuf },
    #[error("{runs}: cannot list: {err}")]
    List { runs: PathBuf, err: std::io::Error },
    #[error("{runs}: no run has speed results ({files} run file(s) read{skipped})")]
    NoSpeed {
        runs: PathBuf,
        files: usize,
        skipped: String,
    },
    #[error("{wanted:?}: no such class in the runs' speed results (have: {have})")]
    UnknownClass { wanted: String, have: String },
    #[error("{wanted:?}: no such workload in the runs' speed results{of} (have: {have})")]
    UnknownWorkload {
        wanted: String,
        of: String,
        have: String,
    },
}

impl HistoryError {
    pub fn flag(&self) -> &'static str {
        match self {
            HistoryError::UnknownClass { .. } => "--class",
            HistoryError::UnknownWorkload { .. } => "--workload",
            _ => "--results",
        }
    }
}

/// One run's point of a series.
#[derive(Debug, Clone)]
pub struct Point {
    pub run_id: String,
    /// The run's start (RFC 3339, UTC).
    pub start: String,
    pub file: PathBuf,
    /// The median of the run's repetitions, in the figure's unit.
    pub value: f64,
    pub repetitions: usize,
}

impl Point {
    /// `2026-11-27`.
    pub fn date(&self) -> &str {
        self.start.get(..10).unwrap_or(&self.start)
    }
}

/// A change point of a series.
#[derive(Debug, Clone)]
pub struct Change {
    /// The first point after the change.
    pub index: usize,
    /// Medians of the points of the segments before and after.
    pub before: f64,
    pub after: f64,
    /// `after / before − 1`.
    pub change: f64,
    pub p: f64,
}

/// Where a new setup starts.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// Its first point.
    pub first: usize,
    /// What changed from the epoch before (empty for the first).
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Stable,
    Improved,
    NotJudged,
    Regressed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Stable => "stable",
            Verdict::Improved => "improved",
            Verdict::NotJudged => "not judged",
            Verdict::Regressed => "regressed",
        }
    }
    pub fn key(self) -> &'static str {
        match self {
            Verdict::NotJudged => "not_judged",
            v => v.as_str(),
        }
    }
}

/// One class × workload × figure over the runs.
#[derive(Debug, Clone)]
pub struct Series {
    pub class: String,
    pub workload: String,
    pub metric: Metric,
    /// Oldest first.
    pub points: Vec<Point>,
    /// At least one; the first starts at point 0.
    pub epochs: Vec<Epoch>,
    /// Change points of every epoch, in order.
    pub changes: Vec<Change>,
    pub verdict: Verdict,
    /// The threshold (a fraction) of the newest run for this figure.
    pub margin: f64,
    /// The newest segment against its reference: (first point of the reference segment, its
    /// median, the newest segment's median, the change), when the newest epoch has a change.
    pub judged: Option<Judged>,
    /// Why the verdict (one line).
    pub why: String,
    /// See [`History::noise_sigma`].
    pub noise_sigma: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Judged {
    pub reference_first: usize,
    pub reference: f64,
    pub newest_first: usize,
    pub newest: f64,
    pub change: f64,
}

impl Series {
    /// The index of the newest epoch's first point.
    pub fn newest_epoch(&self) -> usize {
        self.epochs.last().map_or(0, |e| e.first)
    }
    /// Is a change from `a` to `b` for the worse (any amount)?
    fn worse(&self, a: f64, b: f64) -> bool {
        if self.metric.higher_is_better() {
            b < a
        } else {
            b > a
        }
    }
}

/// What was read.
#[derive(Debug, Clone)]
pub struct History {
    pub runs_dir: PathBuf,
    /// Run files used (readable runs).
    pub runs: usize,
    /// The oldest and newest start of the runs used.
    pub span: Option<(String, String)>,
    pub series: Vec<Series>,
    /// Files skipped and values left out, one line each.
    pub warnings: Vec<String>,
    pub params: Params,
    pub min_runs: usize,
    index: HashMap<(String, String, String), usize>,
}

impl History {
    pub fn count(&self, v: Verdict) -> usize {
        self.series.iter().filter(|s| s.verdict == v).count()
    }

    /// Run-to-run noise of `ln(per-run median)` of (class, workload, metric key) in the newest
    /// segment of its series: 1.4826 × MAD, a robust σ. `None` when the series is unknown, not
    /// judged (too short a history of its setup), or its newest segment has fewer than
    /// [`NOISE_MIN_RUNS`] runs.
    pub fn noise_sigma(&self, class: &str, workload: &str, metric: &str) -> Option<f64> {
        let i = self
            .index
            .get(&(class.to_string(), workload.to_string(), metric.to_string()))?;
        self.series[*i].noise_sigma
    }

    /// 3 when a series regressed; 4 when none did but some could not be judged (unless
    /// `allow_not_judged`); else 0.
    pub fn exit_code(&self, allow_not_judged: bool) -> u8 {
        if self.count(Verdict::Regressed) > 0 {
            crate::exit_code::REGRESSED
        } else if self.count(Verdict::NotJudged) > 0 && !allow_not_judged {
            crate::exit_code::INCONCLUSIVE
        } else {
            crate::exit_code::OK
        }
    }

    /// One line: the counts, worst first.
    pub fn summary(&self) -> String {
        let n = self.series.len();
        let head = if self.count(Verdict::Regressed) > 0 {
            "REGRESSED"
        } else if self.count(Verdict::NotJudged) == n {
            "NOT JUDGED"
        } else if self.count(Verdict::NotJudged) > 0 {
            "PARTLY JUDGED"
        } else {
            "OK"
        };
        let parts: Vec<String> = [
            Verdict::Regressed,
            Verdict::NotJudged,
            Verdict::Improved,
            Verdict::Stable,
        ]
        .iter()
        .map(|v| format!("{} {}", self.count(*v), v.as_str()))
        .collect();
        format!(
            "history: {head}: {} of {n} series ({}); not judged = fewer than {} runs of the newest setup",
            parts.join(", "),
            crate::registry::count(self.runs, "run"),
            self.min_runs,
        )
    }
}

/// The noise σ of one figure from `<results>/runs` (reads the newest [`DEFAULT_LAST`] run
/// files); see [`History::noise_sigma`]. `None` also when the history cannot be read.
pub fn noise_sigma(results: &Path, class: &str, workload: &str, metric: &str) -> Option<f64> {
    let opts = Options {
        class: Some(class.to_string()),
        workload: Some(workload.to_string()),
        newest_files: Some(DEFAULT_LAST),
        ..Options::default()
    };
    load(results, &opts)
        .ok()?
        .noise_sigma(class, workload, metric)
}

/// 1.4826 × MAD of the points' logs: their run-to-run σ on the log scale.
fn log_spread(points: &[Point]) -> Option<f64> {
    log_sigma(points.iter().map(|x| x.value))
}

/// 1.4826 × MAD of the logs of per-run figures (positive): the run-to-run σ on the log scale,
/// robust to an odd run.
pub(crate) fn log_sigma(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values.into_iter().map(f64::ln).collect();
    let m = crate::stats::median(&logs)?;
    let dev: Vec<f64> = logs.iter().map(|v| (v - m).abs()).collect();
    crate::stats::median(&dev).map(|d| 1.4826 * d)
}

/// A start time as `pvcheck run` writes it: `YYYY-MM-DDTHH:MM:SS…Z`.
fn plausible_start(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && s.ends_with('Z')
}

type Key = (String, String, Metric);

/// A series while reading: points with their setup fingerprints and thresholds.
struct Raw {
    points: Vec<Point>,
    prints: Vec<BTreeMap<String, String>>,
    margins: Vec<f64>,
}

/// What one run contributes: per series its point, fingerprint and threshold.
struct RunPoints {
    start: String,
    run_id: String,
    entries: Vec<(Key, Point, BTreeMap<String, String>, f64)>,
}

fn extract(
    doc: &RunDoc,
    opts: &Options,
    all_classes: &mut Vec<String>,
    all_workloads: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> RunPoints {
    let mut entries = Vec::new();
    for t in &doc.trials {
        let Some(w) = t.workload() else { continue };
        if t.repetitions.is_empty() || t.status != "passed" {
            continue;
        }
        if !all_classes.contains(&t.class) {
            all_classes.push(t.class.clone());
        }
        if !all_workloads.contains(&(t.class.clone(), w.to_string())) {
            all_workloads.push((t.class.clone(), w.to_string()));
        }
        if opts.class.as_ref().is_some_and(|c| c != &t.class)
            || opts.workload.as_ref().is_some_and(|x| x != w)
        {
            continue;
        }
        let print = fingerprint::fingerprint(doc, &[(t.class.clone(), vec![w.to_string()])]);
        let limits = doc.thresholds(&t.class).for_workload(w);
        for m in metrics::metrics_of(&t.repetitions[0]) {
            let vals: Vec<f64> = t
                .repetitions
                .iter()
                .filter_map(|b| metrics::value(b, m))
                .collect();
            let Some(med) = crate::stats::median(&vals) else {
                continue;
            };
            if med <= 0.0 {
                warnings.push(format!(
                    "{}: {} {w} {}: median {med} left out (not a positive figure)",
                    doc.path.display(),
                    t.class,
                    m.label()
                ));
                continue;
            }
            entries.push((
                (t.class.clone(), w.to_string(), m),
                Point {
                    run_id: doc.run_ids[0].clone(),
                    start: doc.start.clone(),
                    file: doc.path.clone(),
                    value: med,
                    repetitions: vals.len(),
                },
                print.clone(),
                m.threshold(&limits),
            ));
        }
    }
    RunPoints {
        start: doc.start.clone(),
        run_id: doc.run_ids[0].clone(),
        entries,
    }
}

/// `2026-10-16 (run night16)`.
fn since(p: &Point) -> String {
    format!("{} (run {})", p.date(), p.run_id)
}

/// Reads `<results>/runs` and judges every series.
pub fn load(results: &Path, opts: &Options) -> Result<History, HistoryError> {
    if !results.exists() {
        return Err(HistoryError::NoDir(results.to_path_buf()));
    }
    if !results.is_dir() {
        return Err(HistoryError::NotDir(results.to_path_buf()));
    }
    let runs_dir = results.join("runs");
    if !runs_dir.is_dir() {
        return Err(HistoryError::NoRunsDir {
            dir: results.to_path_buf(),
            runs: runs_dir,
        });
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&runs_dir)
        .map_err(|err| HistoryError::List {
            runs: runs_dir.clone(),
            err,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    if let Some(n) = opts.newest_files {
        files.drain(..files.len().saturating_sub(n));
    }
    let mut warnings = Vec::new();
    let mut runs: Vec<RunPoints> = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut skipped = 0usize;
    let mut all_classes: Vec<String> = Vec::new();
    let mut all_workloads: Vec<(String, String)> = Vec::new();
    for f in &files {
        let doc = match RunDoc::read(f) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(format!("skipped {e}"));
                skipped += 1;
                continue;
            }
        };
        let why = if doc.baseline.is_some() {
            Some("a baseline, not a run (baselines belong in baselines/)".to_string())
        } else if doc.run_ids.first().is_none_or(String::is_empty) {
            Some("no run_id".to_string())
        } else if !plausible_start(&doc.start) {
            Some(format!(
                "start {:?} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
                doc.start
            ))
        } else {
            seen.get(&doc.run_ids[0])
                .map(|other| format!("the same run as {}", other.display()))
        };
        if let Some(why) = why {
            warnings.push(format!("skipped {}: {why}", f.display()));
            skipped += 1;
            continue;
        }
        seen.insert(doc.run_ids[0].clone(), f.clone());
        // Only the figures are kept: a year of run files does not stay in memory.
        runs.push(extract(
            &doc,
            opts,
            &mut all_classes,
            &mut all_workloads,
            &mut warnings,
        ));
    }
    runs.sort_by(|a, b| (&a.start, &a.run_id).cmp(&(&b.start, &b.run_id)));
    let mut raw: BTreeMap<Key, Raw> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    let mut used = 0usize;
    let mut span: Option<(String, String)> = None;
    for run in runs {
        if run.entries.is_empty() {
            continue;
        }
        used += 1;
        span = Some(match span {
            None => (run.start.clone(), run.start.clone()),
            Some((a, _)) => (a, run.start.clone()),
        });
        for (key, point, print, margin) in run.entries {
            let r = raw.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Raw {
                    points: Vec::new(),
                    prints: Vec::new(),
                    margins: Vec::new(),
                }
            });
            r.points.push(point);
            r.prints.push(print);
            r.margins.push(margin);
        }
    }
    if let Some(c) = &opts.class
        && !all_classes.contains(c)
        && !all_classes.is_empty()
    {
        return Err(HistoryError::UnknownClass {
            wanted: c.clone(),
            have: all_classes.join(", "),
        });
    }
    if let Some(w) = &opts.workload
        && !all_classes.is_empty()
        && !all_workloads
            .iter()
            .any(|(c, x)| x == w && opts.class.as_ref().is_none_or(|oc| oc == c))
    {
        let mut have: Vec<String> = all_workloads
            .iter()
            .filter(|(c, _)| opts.class.as_ref().is_none_or(|oc| oc == c))
            .map(|(_, x)| x.clone())
            .collect();
        have.dedup();
        have.sort();
        have.dedup();
        return Err(HistoryError::UnknownWorkload {
            wanted: w.clone(),
            of: opts
                .class
                .as_ref()
                .map(|c| format!(" of class {c}"))
                .unwrap_or_default(),
            have: have.join(", "),
        });
    }
    if order.is_empty() {
        return Err(HistoryError::NoSpeed {
            runs: runs_dir,
            files: files.len(),
            skipped: if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            },
        });
    }
    let params = Params::default();
    let min_runs = edivisive::min_judgeable_len(&params);
    let last = opts.last.max(2);
    let mut series = Vec::with_capacity(order.len());
    for key in order {
        let Some(mut r) = raw.remove(&key) else {
            continue;
        };
        let cut = r.points.len().saturating_sub(last);
        r.points.drain(..cut);
        r.prints.drain(..cut);
        r.margins.drain(..cut);
        series.push(judge(key, r, &params, min_runs, &mut warnings));
    }
    let index = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                (
                    s.class.clone(),
                    s.workload.clone(),
                    s.metric.key().to_string(),
                ),
                i,
            )
        })
        .collect();
    Ok(History {
        runs_dir,
        runs: used,
        span,
        series,
        warnings,
        params,
        min_runs,
        index,
    })
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<Difference> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            base: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

fn median_of(points: &[Point]) -> f64 {
    let v: Vec<f64> = points.iter().map(|p| p.value).collect();
    crate::stats::median(&v).unwrap_or(f64::NAN)
}

fn judge(key: Key, r: Raw, params: &Params, min_runs: usize, warnings: &mut Vec<String>) -> Series {
    let (class, workload, metric) = key;
    let n = r.points.len();
    let mut epochs = vec![Epoch {
        first: 0,
        differences: Vec::new(),
    }];
    for i in 1..n {
        if r.prints[i] != r.prints[i - 1] {
            epochs.push(Epoch {
                first: i,
                differences: diff(&r.prints[i - 1], &r.prints[i]),
            });
        }
    }
    let seed = crate::checks::derive_u64(&format!("history:{class}:{workload}:{}", metric.key()));
    let p = Params { seed, ..*params };
    let mut changes = Vec::new();
    // Segment starts of the newest epoch.
    let mut newest_starts = Vec::new();
    for (k, e) in epochs.iter().enumerate() {
        let end = epochs.get(k + 1).map_or(n, |x| x.first);
        let pts = &r.points[e.first..end];
        let logs: Vec<f64> = pts.iter().map(|x| x.value.ln()).collect();
        let cps = match edivisive::change_points(&logs, &p) {
            Ok(c) => c,
            Err(err) => {
                // Unreachable: points are positive and finite. Said rather than hidden.
                warnings.push(format!("{class} {workload} {}: {err}", metric.label()));
                Vec::new()
            }
        };
        let mut starts = vec![0];
        starts.extend(cps.iter().map(|c| c.index));
        starts.push(pts.len());
        for (j, c) in cps.iter().enumerate() {
            let before = median_of(&pts[starts[j]..starts[j + 1]]);
            let after = median_of(&pts[starts[j + 1]..starts[j + 2]]);
            changes.push(Change {
                index: e.first + c.index,
                before,
                after,
                change: after / before - 1.0,
                p: c.p,
            });
        }
        if k + 1 == epochs.len() {
            newest_starts = starts.iter().map(|s| e.first + s).collect();
        }
    }
    let margin = r.margins.last().copied().unwrap_or(0.05);
    let newest_first = epochs.last().map_or(0, |e| e.first);
    let epoch_len = n - newest_first;
    let mut s = Series {
        class,
        workload,
        metric,
        points: r.points,
        epochs,
        changes,
        verdict: Verdict::Stable,
        margin,
        judged: None,
        why: String::new(),
        noise_sigma: None,
    };
    if epoch_len < min_runs {
        // Too few runs to look for a change point, but enough to know the figure's noise: the
        // runs of the newest setup, taken as one segment (a robust spread, so one odd night
        // among them moves it little).
        if epoch_len >= NOISE_MIN_RUNS {
            s.noise_sigma = log_spread(&s.points[newest_first..]);
        }
        s.verdict = Verdict::NotJudged;
        s.why = if s.epochs.len() > 1 {
            format!(
                "{} since the setup changed on {} ({} needed)",
                crate::registry::count(epoch_len, "run"),
                s.points[newest_first].date(),
                min_runs
            )
        } else {
            format!(
                "{}, {min_runs} needed",
                crate::registry::count(epoch_len, "run")
            )
        };
        return s;
    }
    // Segments of the newest epoch: [starts[j], starts[j + 1]).
    let segs: Vec<(usize, usize)> = newest_starts.windows(2).map(|w| (w[0], w[1])).collect();
    let meds: Vec<f64> = segs
        .iter()
        .map(|&(a, b)| median_of(&s.points[a..b]))
        .collect();
    let k = segs.len() - 1;
    let (nf, nl) = segs[k];
    if nl - nf >= NOISE_MIN_RUNS {
        s.noise_sigma = log_spread(&s.points[nf..nl]);
    }
    if k == 0 {
        s.why = format!("no change point in {epoch_len} runs");
        return s;
    }
    let mut j = k;
    while j > 0 && s.worse(meds[j - 1], meds[j]) {
        j -= 1;
    }
    let signed = |from: f64, to: f64| to / from - 1.0;
    let bad = |c: f64| if metric.higher_is_better() { -c } else { c };
    let (reference, newest) = (meds[j], meds[k]);
    let change = signed(reference, newest);
    s.judged = Some(Judged {
        reference_first: segs[j].0,
        reference,
        newest_first: nf,
        newest,
        change,
    });
    if j < k && bad(change) > margin {
        s.verdict = Verdict::Regressed;
        s.why = format!(
            "{} → {} ({:+.1}%) since {}, beyond the {}{:.0}% threshold{}",
            metric.format(reference),
            metric.format(newest),
            100.0 * change,
            since(&s.points[nf]),
            if metric.higher_is_better() { "-" } else { "+" },
            100.0 * margin,
            if k - j > 1 {
                format!(" ({} steps for the worse)", k - j)
            } else {
                String::new()
            }
        );
        return s;
    }
    let last_change = signed(meds[k - 1], newest);
    if -bad(last_change) > margin {
        s.verdict = Verdict::Improved;
        s.why = format!(
            "{} → {} ({:+.1}%) since {}",
            metric.format(meds[k - 1]),
            metric.format(newest),
            100.0 * last_change,
            since(&s.points[nf])
        );
    } else {
        s.why = format!(
            "newest change {:+.1}% since {}, within the {:.0}% threshold",
            100.0 * if j < k { change } else { last_change },
            since(&s.points[nf]),
            100.0 * margin
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::synthetic::{self, Spec};

    /// Writes `speeds.len()` nightly runs of one class × `workloads` workloads.
    fn nights(dir: &Path, speeds: &[f64], workloads: usize, noise: f64) {
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs).unwrap();
        for (i, s) in speeds.iter().enumerate() {
            let day = i + 1;
            let spec = Spec {
                start: format!("2026-10-{:02}T03:00:00Z", day),
                speed: *s,
                noise,
                seed: 100 + i as u64,
                ..Spec::new(&format!("night{day:02}"), 1, workloads, 5)
            };
            let doc = synthetic::run(&spec);
            std::fs::write(
                runs.join(format!("202610{day:02}T030000Z-night{day:02}.json")),
                serde_json::to_vec(&doc).unwrap(),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_drop_at_a_known_night_regresses_and_names_that_night() {
        let d = tempfile::tempdir().unwrap();
        let mut speeds = vec![1.0; 14];
        speeds.extend([0.8; 8]);
        nights(d.path(), &speeds, 1, 0.01);
        let h = load(d.path(), &Options::default()).unwrap();
        let iops = h.series.iter().find(|s| s.metric == Metric::Iops).unwrap();
        assert_eq!(iops.verdict, Verdict::Regressed, "{}", iops.why);
        assert_eq!(iops.changes.len(), 1);
        assert_eq!(iops.points[iops.changes[0].index].run_id, "night15");
        assert!((iops.changes[0].change + 0.2).abs() < 0.02);
        // Latency rose by 25 %: regressed the other way round.
        let p99 = h.series.iter().find(|s| s.metric == Metric::P99).unwrap();
        assert_eq!(p99.verdict, Verdict::Regressed, "{}", p99.why);
        assert_eq!(h.exit_code(false), crate::exit_code::REGRESSED);
        assert!(
            h.noise_sigma("class-0", "randread-4k-qd64", "iops")
                .is_some()
        );
    }

    #[test]
    fn noise_alone_is_stable_and_gives_a_noise_sigma() {
        let d = tempfile::tempdir().unwrap();
        nights(d.path(), &[1.0; 20], 2, 0.02);
        let h = load(d.path(), &Options::default()).unwrap();
        for s in &h.series {
            assert_eq!(s.verdict, Verdict::Stable, "{} {}", s.workload, s.why);
            assert!(s.changes.is_empty());
        }
        let sigma = h
            .noise_sigma("class-0", "randread-4k-qd64", "iops")
            .unwrap();
        // Per-run medians of 5 repetitions with 2 % noise: σ ≈ 0.02 × 1.25 / √5 ≈ 1.1 %.
        assert!(sigma > 0.002 && sigma < 0.03, "{sigma}");
        assert_eq!(h.noise_sigma("class-0", "nope", "iops"), None);
        assert_eq!(h.exit_code(false), crate::exit_code::OK);
    }

    #[test]
    fn a_short_history_is_not_judged_and_is_not_green() {
        let d = tempfile::tempdir().unwrap();
        nights(d.path(), &[1.0, 1.0, 1.0, 0.5, 0.5], 1, 0.01);
        let h = load(d.path(), &Options::default()).unwrap();
        assert!(h.series.iter().all(|s| s.verdict == Verdict::NotJudged));
        assert_eq!(h.exit_code(false), crate::exit_code::INCONCLUSIVE);
        assert_eq!(h.exit_code(true), crate::exit_code::OK);
        assert!(
            h.summary().starts_with("history: NOT JUDGED"),
            "{}",
            h.summary()
        );
    }

    /// Calibration, 2026-12-06: eight runs of one unchanged class on this machine differed by
    /// 10–40 % from run to run, and with no noise known the gate called 13 of their 28 pairs
    /// regressed, because history gave a σ only from 11 runs on (enough to look for change
    /// points). Six runs of one setup are enough to know it.
    #[test]
    fn six_runs_give_a_noise_sigma_before_there_are_enough_for_change_points() {
        let d = tempfile::tempdir().unwrap();
        nights(d.path(), &[1.0, 1.1, 0.9, 1.05, 0.95, 1.0], 1, 0.01);
        let h = load(d.path(), &Options::default()).unwrap();
        let iops = h.series.iter().find(|s| s.metric == Metric::Iops).unwrap();
        assert_eq!(iops.verdict, Verdict::NotJudged, "{}", iops.why);
        let sigma = iops.noise_sigma.expect("σ from six runs");
        assert!(sigma > 0.03 && sigma < 0.15, "{sigma}");
        let d = tempfile::tempdir().unwrap();
        nights(d.path(), &[1.0, 1.1, 0.9, 1.05, 0.95], 1, 0.01);
        let h = load(d.path(), &Options::default()).unwrap();
        assert!(h.series.iter().all(|s| s.noise_sigma.is_none()));
    }

    /// Three steps of −4 %, each within the −5 % threshold: −11.5 % from where they started.
    #[test]
    fn a_staircase_of_small_drops_regresses_as_a_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut speeds = vec![1.0; 12];
        speeds.extend([0.96; 12]);
        speeds.extend([0.92; 12]);
        speeds.extend([0.885; 12]);
        nights(d.path(), &speeds, 1, 0.002);
        let h = load(d.path(), &Options::default()).unwrap();
        let iops = h.series.iter().find(|s| s.metric == Metric::Iops).unwrap();
        assert!(iops.changes.len() >= 2, "{:?}", iops.changes);
        assert_eq!(iops.verdict, Verdict::Regressed, "{}", iops.why);
        let j = iops.judged.unwrap();
        assert!((j.change + 0.115).abs() < 0.02, "{j:?}");
    }

    #[test]
    fn a_setup_change_starts_a_new_epoch_which_alone_is_judged() {
        let d = tempfile::tempdir().unwrap();
        let mut speeds = vec![1.0; 14];
        speeds.extend([0.5; 6]);
        nights(d.path(), &speeds, 1, 0.01);
        // Nights 15.. ran with another kernel.
        for i in 15..=20 {
            let p = d
                .path()
                .join(format!("runs/202610{i:02}T030000Z-night{i:02}.json"));
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            v["environment"]["kernel"] = "6.9.0-other".into();
            std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        }
        let h = load(d.path(), &Options::default()).unwrap();
        let iops = h.series.iter().find(|s| s.metric == Metric::Iops).unwrap();
        assert_eq!(iops.epochs.len(), 2);
        assert_eq!(iops.epochs[1].first, 14);
        assert_eq!(iops.epochs[1].differences[0].key, "kernel");
        assert_eq!(iops.verdict, Verdict::NotJudged, "{}", iops.why);
        assert!(
            iops.why.contains("setup changed on 2026-10-15"),
            "{}",
            iops.why
        );
    }

    #[test]
    fn files_that_are_not_runs_are_skipped_with_a_warning_each() {
        let d = tempfile::tempdir().unwrap();
        nights(d.path(), &[1.0; 12], 1, 0.01);
        let runs = d.path().join("runs");
        std::fs::write(runs.join("garbage.json"), "not json").unwrap();
        std::fs::write(runs.join("empty.json"), "").unwrap();
        std::fs::write(runs.join("notes.txt"), "ignored: not .json").unwrap();
        let mut dup: serde_json::Value = serde_json::from_slice(
            &std::fs::read(runs.join("20261001T030000Z-night01.json")).unwrap(),
        )
        .unwrap();
        std::fs::write(runs.join("zz-copy.json"), serde_json::to_vec(&dup).unwrap()).unwrap();
        dup["kind"] = "baseline".into();
        dup["name"] = "b".into();
        std::fs::write(
            runs.join("zz-baseline.json"),
            serde_json::to_vec(&dup).unwrap(),
        )
        .unwrap();
        let h = load(d.path(), &Options::default()).unwrap();
        assert_eq!(h.runs, 12);
        assert_eq!(h.warnings.len(), 4, "{:#?}", h.warnings);
        assert!(
            h.warnings
                .iter()
                .any(|w| w.contains("garbage.json") && w.contains("invalid JSON"))
        );
        assert!(h.warnings.iter().any(|w| w.contains("the same run as")));
        assert!(
            h.warnings
                .iter()
                .any(|w| w.contains("a baseline, not a run"))
        );
    }

    #[test]
    fn bad_directories_and_unknown_filters_are_errors_naming_their_flag() {
        let d = tempfile::tempdir().unwrap();
        let e = load(&d.path().join("missing"), &Options::default()).unwrap_err();
        assert_eq!(e.flag(), "--results");
        assert!(e.to_string().ends_with("missing: no such directory"), "{e}");
        let e = load(d.path(), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("no runs directory"), "{e}");
        std::fs::create_dir(d.path().join("runs")).unwrap();
        let e = load(d.path(), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("no run has speed results"), "{e}");
        nights(d.path(), &[1.0; 3], 1, 0.01);
        let o = Options {
            class: Some("nope".into()),
            ..Options::default()
        };
        let e = load(d.path(), &o).unwrap_err();
        assert_eq!(e.flag(), "--class");
        assert!(e.to_string().contains("have: class-0"), "{e}");
        let o = Options {
            workload: Some("nope".into()),
            ..Options::default()
        };
        let e = load(d.path(), &o).unwrap_err();
        assert_eq!(e.flag(), "--workload");
        assert!(e.to_string().contains("randread-4k-qd64"), "{e}");
    }
}

/// The run-to-run noise σ of every figure the history of `<results>/runs` knows (newest
/// [`DEFAULT_LAST`] run files), keyed as the gate wants it: the margin of a figure is raised to
/// 3σ where it is known (`compare::gate`). Empty when there is no readable history.
pub fn noise_of(results: &Path) -> super::Noise {
    let opts = Options {
        newest_files: Some(DEFAULT_LAST),
        ..Options::default()
    };
    let Ok(h) = load(results, &opts) else {
        return super::Noise::new();
    };
    h.series
        .iter()
        .filter_map(|s| {
            let sigma = s.noise_sigma?;
            Some((
                (
                    s.class.clone(),
                    s.workload.clone(),
                    s.metric.key().to_string(),
                ),
                sigma,
            ))
        })
        .collect()
}
