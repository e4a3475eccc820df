//! The checks: each (class × check) is one trial named `<class>::<check>`.
//!
//! A check gets a [`CheckCtx`] (platform, class, run, profile) and returns [`Verdict`] or a
//! [`Failure`]. It talks only to the platform traits and to the agent, whose JSON it reads
//! (`serde_json::Value`, fields taken by name). Every volume a check provisions goes through
//! [`CheckCtx::with_volume`], which destroys it afterwards, or with `--keep-on-failure` keeps a
//! failed one and says where it is.

pub mod agent_json;
pub mod cleanup;
pub mod clone;
pub mod csi;
pub mod expand;
pub mod flexvolume;
pub mod integrity;
pub mod provision;
pub mod snapshot;
pub mod speed;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::config::ClassSpec;
use crate::platform::{Platform, PlatformError, Pod, Volume, VolumeRequest};
use crate::profile::Profile;

/// Every check, in the order trials are listed and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Provision,
    Recreate,
    Durability,
    Selftest,
    Upgrade,
    Expand,
    Snapshot,
    /// A clone (CSI CreateVolume from a volume) holds exactly the source's content at the clone.
    Clone,
    /// `flexvolume::<call>`: the driver's protocol for one call (flexvolume classes only).
    Flexvolume(&'static str),
    /// `csi::<call>`: the driver's CSI protocol for one call (csi classes only).
    Csi(&'static str),
    Speed(String),
    Cleanup,
}

impl Check {
    /// The part of the trial name after `<class>::`.
    pub fn name(&self) -> String {
        match self {
            Check::Provision => "provision".into(),
            Check::Recreate => "integrity::recreate".into(),
            Check::Durability => "integrity::durability".into(),
            Check::Selftest => "integrity::selftest".into(),
            Check::Upgrade => "integrity::upgrade".into(),
            Check::Expand => "expand".into(),
            Check::Snapshot => "snapshot".into(),
            Check::Clone => "clone".into(),
            Check::Flexvolume(call) => format!("flexvolume::{call}"),
            Check::Csi(call) => format!("csi::{call}"),
            Check::Speed(w) => format!("speed::{w}"),
            Check::Cleanup => "cleanup".into(),
        }
    }
    /// Every check for `class`, speed workloads from [`speed::workloads`].
    pub fn all() -> Vec<Check> {
        let mut v = vec![
            Check::Provision,
            Check::Recreate,
            Check::Durability,
            Check::Selftest,
            Check::Upgrade,
            Check::Expand,
            Check::Snapshot,
            Check::Clone,
        ];
        v.extend(
            speed::workloads()
                .iter()
                .map(|w| Check::Speed((*w).to_string())),
        );
        v.push(Check::Cleanup);
        v
    }
    /// Every check for this class: [`Check::all`], plus the protocol checks of a flexvolume class
    /// (after the integrity checks, before speed).
    pub fn all_for(class: &ClassSpec) -> Vec<Check> {
        let mut v = Check::all();
        if matches!(class.local, Some(crate::config::LocalKind::Flexvolume(_))) {
            let at = v
                .iter()
                .position(|c| matches!(c, Check::Speed(_) | Check::Cleanup))
                .unwrap_or(v.len());
            let calls =
                crate::platform::local::flexvolume::Call::ALL.map(|c| Check::Flexvolume(c.name()));
            v.splice(at..at, calls);
        }
        if matches!(class.local, Some(crate::config::LocalKind::Csi(_))) {
            let at = v
                .iter()
                .position(|c| matches!(c, Check::Speed(_) | Check::Cleanup))
                .unwrap_or(v.len());
            let calls = crate::platform::local::csi::Call::ALL.map(|c| Check::Csi(c.name()));
            v.splice(at..at, calls);
        }
        v
    }
    /// A short, volume-name-safe tag.
    pub fn tag(&self) -> String {
        self.name().replace("integrity::", "").replace("::", "-")
    }
    /// Why the class cannot run this check, if it cannot (the trial is ignored with that reason).
    pub fn unsupported(&self, class: &ClassSpec, platform: &dyn Platform) -> Option<String> {
        let runs_the_agent = !matches!(
            self,
            Check::Flexvolume(_) | Check::Csi(_) | Check::Cleanup
        );
        if runs_the_agent && csi::block_mode(class) {
            return Some(csi::BLOCK_DATA.into());
        }
        match self {
            Check::Upgrade => {
                let has = class
                    .upgrade
                    .as_ref()
                    .is_some_and(|u| u.command.is_some() || u.driver.is_some() || u.csi.is_some());
                (!has).then(|| "the class defines no `upgrade`".to_string())
            }
            Check::Expand => (!class.capabilities.expansion)
                .then(|| "capability `expansion` is off for this class".into()),
            Check::Snapshot => (!class.capabilities.snapshot)
                .then(|| "capability `snapshot` is off for this class".into()),
            Check::Clone => (!class.capabilities.clone)
                .then(|| "capability `clone` is off for this class".into()),
            _ => {
                let _ = platform;
                None
            }
        }
    }
}

/// How a check ended when it did not fail.
#[derive(Debug, Clone)]
pub enum Verdict {
    Passed,
    /// Found at run time that it cannot run (the reason is shown).
    Ignored(String),
}

/// A failed check: a message for the terminal and details for the result file.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Several lines: what failed, the damage (kind, file, offset, generations), seed, volume id,
    /// and the command that reproduces it by hand.
    pub message: String,
    pub details: serde_json::Value,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<PlatformError> for Failure {
    fn from(e: PlatformError) -> Self {
        Failure::new(e.to_string())
    }
}

/// What a check records beyond pass/fail: metrics (the agent's JSON and timings) and the volume.
#[derive(Debug, Default)]
pub struct TrialData {
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Fingerprint of the (first) volume the check used.
    pub volume: Option<serde_json::Value>,
}

/// Everything a check needs.
pub struct CheckCtx {
    pub platform: Arc<dyn Platform>,
    pub class: Arc<ClassSpec>,
    pub run_id: String,
    pub run_seed: u64,
    pub profile: Profile,
    pub keep_on_failure: bool,
    /// Harness-side directory for this trial's ledgers and acks (off the volume).
    pub work_dir: PathBuf,
    pub data: Mutex<TrialData>,
    /// The check's name, for seeds and volume names.
    pub check: Check,
    /// Kept volumes are reported here.
    pub kept: Arc<Mutex<Vec<String>>>,
    /// The shared speed volumes of the run.
    pub speed: Arc<speed::SpeedVolumes>,
    /// When agents ran, to tell agent work from harness work.
    pub agent_clock: Arc<AgentClock>,
}

impl CheckCtx {
    /// The seed of this trial: derived from the run seed and the trial name, so `--seed` reproduces it.
    pub fn seed(&self) -> u64 {
        derive_u64(&format!(
            "{}:{}::{}",
            self.run_seed,
            self.class.name(),
            self.check.name()
        ))
    }

    /// The u64 volume id the agent stamps in every block (derived from the platform's volume id).
    pub fn agent_volume_id(volume: &dyn Volume) -> u64 {
        derive_u64(volume.id())
    }

    pub fn agent_timeout(&self) -> Duration {
        self.class.timeouts.agent.0
    }

    pub fn metric(&self, key: &str, value: serde_json::Value) {
        self.data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .metrics
            .insert(key.into(), value);
    }

    /// Provisions a volume named `<class>-<tag>[-suffix]`, runs `f`, and destroys it (or keeps it
    /// on failure with --keep-on-failure, adding where it is to the failure message).
    pub fn with_volume<T>(
        &self,
        suffix: &str,
        size: u64,
        f: impl FnOnce(&mut dyn Volume) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let name = if suffix.is_empty() {
            format!("{}-{}", self.class.name(), self.check.tag())
        } else {
            format!("{}-{}-{suffix}", self.class.name(), self.check.tag())
        };
        let req = VolumeRequest {
            run_id: self.run_id.clone(),
            name,
            size,
        };
        let start = Instant::now();
        let mut vol = self
            .platform
            .provision(&self.class, &req)
            .map_err(|e| Failure::from(e).context("provision"))?;
        self.metric("provision_seconds", start.elapsed().as_secs_f64().into());
        {
            let mut d = self.data.lock().unwrap_or_else(|e| e.into_inner());
            if d.volume.is_none() {
                d.volume = Some(vol.fingerprint());
            }
        }
        let result = f(vol.as_mut());
        self.finish_volume(vol, result)
    }

    /// Destroys `vol` after `result`, or keeps it when `result` failed and --keep-on-failure is set.
    pub fn finish_volume<T>(
        &self,
        vol: Box<dyn Volume>,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        match result {
            Err(mut failure) if self.keep_on_failure => {
                let where_ = vol.keep();
                failure.message.push_str(&format!("\n{where_}"));
                self.kept
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(where_);
                Err(failure)
            }
            Err(failure) => {
                if let Err(e) = vol.destroy() {
                    return Err(Failure::new(format!(
                        "{}\nand removing the volume failed: {e}",
                        failure.message
                    ))
                    .with_details(failure.details));
                }
                Err(failure)
            }
            Ok(v) => {
                vol.destroy()
                    .map_err(|e| Failure::from(e).context("removing the volume"))?;
                Ok(v)
            }
        }
    }
}

/// Records when agent processes run, so a run can report how much of its wall time was agent
/// work and how much was the harness's own (provisioning, mkfs, mounts, bookkeeping).
#[derive(Debug)]
pub struct AgentClock {
    start: Instant,
    spans: Mutex<Vec<(f64, f64)>>,
}

impl Default for AgentClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            spans: Mutex::new(Vec::new()),
        }
    }
}

impl AgentClock {
    pub fn span(&self, from: Instant, to: Instant) {
        let a = from.saturating_duration_since(self.start).as_secs_f64();
        let b = to.saturating_duration_since(self.start).as_secs_f64();
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((a, b));
    }
    /// Seconds during which at least one agent ran (the union of the spans).
    pub fn busy_seconds(&self) -> f64 {
        let mut s = self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (mut total, mut cur): (f64, Option<(f64, f64)>) = (0.0, None);
        for (a, b) in s {
            cur = match cur {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    total += cb - ca;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        total + cur.map_or(0.0, |(a, b)| b - a)
    }
    /// Seconds of agent work summed over all agents (parallel agents count twice).
    pub fn summed_seconds(&self) -> f64 {
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(a, b)| b - a)
            .sum()
    }
}

/// Recreates the pod: the agent ends, the volume is unmounted (detached) and mounted again.
pub fn recreate(vol: &mut dyn Volume, pod: Box<dyn Pod>) -> Result<Box<dyn Pod>, Failure> {
    vol.stop_pod(pod)
        .map_err(|e| Failure::from(e).context("stopping the pod"))?;
    vol.start_pod()
        .map_err(|e| Failure::from(e).context("starting the pod again"))
}

/// First 8 bytes of sha256(s), as a u64.
pub fn derive_u64(s: &str) -> u64 {
    let h = sha2::Sha256::digest(s.as_bytes());
    u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness-overhead figure depends on this: overlapping agents count once.
    #[test]
    fn agent_busy_time_is_the_union_of_overlapping_spans() {
        let clock = AgentClock::default();
        let t0 = clock.start;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        clock.span(at(0), at(1000));
        clock.span(at(500), at(1500)); // overlaps the first
        clock.span(at(3000), at(4000)); // a gap of 1.5 s before it
        assert!(
            (clock.busy_seconds() - 2.5).abs() < 1e-9,
            "{}",
            clock.busy_seconds()
        );
        assert!((clock.summed_seconds() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn trial_names_are_class_then_check() {
        let names: Vec<String> = Check::all().iter().map(Check::name).collect();
        assert_eq!(names.first().map(String::as_str), Some("provision"));
        assert_eq!(names.last().map(String::as_str), Some("cleanup"));
        assert!(names.contains(&"speed::randread-4k-qd64".to_string()));
        assert!(names.contains(&"integrity::durability".to_string()));
    }
}
