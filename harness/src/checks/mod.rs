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
pub mod live;
pub mod other_node;
pub mod provision;
pub mod rwx;
pub mod snapshot;
pub mod speed;
pub mod takeover;
pub mod upgrade_phase;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::config::ClassSpec;
use crate::platform::{Platform, PlatformError, Pod, Volume, VolumeRequest};
use crate::profile::Profile;
use crate::report::results::{FailureCategory, KeptVolume};

/// Every check, in the order trials are listed and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Provision,
    Recreate,
    /// Written on one node, verified on another after the detach.
    OtherNode,
    Durability,
    Selftest,
    Upgrade,
    /// The upgrade rolls while the agent writes (`integrity::live-upgrade`).
    LiveUpgrade,
    /// The node plugin SIGKILLed and restarted while the agent writes.
    PluginKill,
    /// The node's kubelet stopped and started while the agent writes.
    KubeletRestart,
    /// The node's kubelet stopped, the volume's pods deleted, the kubelet started.
    PodDeletedWhileKubeletDown,
    Expand,
    Snapshot,
    /// A clone (CSI CreateVolume from a volume) holds exactly the source's content at the clone.
    Clone,
    /// Two pods at once (on two nodes where the volume may be): each writes its own region and
    /// verifies the other's.
    Rwx,
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
            Check::OtherNode => "integrity::other-node".into(),
            Check::Durability => "integrity::durability".into(),
            Check::Selftest => "integrity::selftest".into(),
            Check::Upgrade => "integrity::upgrade".into(),
            Check::LiveUpgrade => "integrity::live-upgrade".into(),
            Check::PluginKill => "disruption::node-plugin-kill".into(),
            Check::KubeletRestart => "disruption::kubelet-restart".into(),
            Check::PodDeletedWhileKubeletDown => {
                "disruption::pod-deleted-while-kubelet-down".into()
            }
            Check::Expand => "expand".into(),
            Check::Snapshot => "snapshot".into(),
            Check::Clone => "clone".into(),
            Check::Rwx => "rwx".into(),
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
            Check::OtherNode,
            Check::Durability,
            Check::Selftest,
            Check::Upgrade,
            Check::LiveUpgrade,
            Check::PluginKill,
            Check::KubeletRestart,
            Check::PodDeletedWhileKubeletDown,
            Check::Expand,
            Check::Snapshot,
            Check::Clone,
            Check::Rwx,
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
            let calls = crate::platform::local::flexvolume::Call::CHECKED
                .map(|c| Check::Flexvolume(c.name()));
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
    /// Why this check cannot run on a raw block volume, if it cannot: the agent runs every
    /// other data check with `--device` on the device the platform publishes.
    pub fn needs_a_filesystem(&self) -> Option<&'static str> {
        match self {
            Check::Durability => Some(
                "raw block volume: the durability stream appends fsynced records to a log file, which needs a filesystem (integrity::recreate and integrity::upgrade verify the raw device)",
            ),
            Check::LiveUpgrade
            | Check::PluginKill
            | Check::KubeletRestart
            | Check::PodDeletedWhileKubeletDown => Some(
                "raw block volume: the live stream appends fsynced records to a log file, which needs a filesystem",
            ),
            Check::Selftest => Some(
                "raw block volume: the self-test damages a sacrificial dataset in a directory of its own, which needs a filesystem (the raw device's checks use the same verifier)",
            ),
            Check::Speed(w) if w == "metadata" => {
                Some("raw block volume: metadata rates (create, stat, unlink) need a filesystem")
            }
            _ => None,
        }
    }
    /// Why the class cannot run this check, if it cannot (the trial is ignored with that reason).
    pub fn unsupported(&self, class: &ClassSpec, platform: &dyn Platform) -> Option<String> {
        if platform.raw_block(class)
            && let Some(why) = self.needs_a_filesystem()
        {
            return Some(why.into());
        }
        match self {
            Check::Upgrade => {
                let has = class
                    .upgrade
                    .as_ref()
                    .is_some_and(|u| u.command.is_some() || u.driver.is_some() || u.csi.is_some());
                (!has).then(|| "the class defines no `upgrade`".to_string())
            }
            Check::LiveUpgrade => live::unsupported(live::Kind::LiveUpgrade, class, platform),
            Check::PluginKill => live::unsupported(live::Kind::PluginKill, class, platform),
            Check::KubeletRestart => live::unsupported(live::Kind::KubeletRestart, class, platform),
            Check::PodDeletedWhileKubeletDown => {
                live::unsupported(live::Kind::PodDeletedWhileKubeletDown, class, platform)
            }
            Check::Expand => (!class.capabilities.expansion)
                .then(|| "capability `expansion` is off for this class".into()),
            Check::Snapshot => (!class.capabilities.snapshot)
                .then(|| "capability `snapshot` is off for this class".into()),
            Check::Clone => (!class.capabilities.clone)
                .then(|| "capability `clone` is off for this class".into()),
            Check::Rwx if !class.capabilities.rwx => {
                Some("capability `rwx` is off for this class".into())
            }
            Check::Rwx if platform.raw_block(class) => Some(
                "raw block volume: rwx gives each pod a directory of its own on one filesystem; two pods writing one raw device would need ranges of it".into(),
            ),
            Check::Rwx => platform.shares_volumes(class).err(),
            Check::OtherNode => other_node::unsupported(platform),
            _ => None,
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

/// A failed check: a message for the terminal, a category and details for the result file.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Several lines: what failed, the damage (kind, file, offset, generations), seed, volume id,
    /// and the command that reproduces it by hand.
    pub message: String,
    /// What kind of failure: only `Data` means damaged data.
    pub category: FailureCategory,
    pub details: serde_json::Value,
}

impl Failure {
    /// A failure of the harness's own work (category `infrastructure`); use the named
    /// constructors or [`Failure::category`] for anything the volume or driver did.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            category: FailureCategory::Infrastructure,
            details: serde_json::Value::Null,
        }
    }
    /// Damage found on the volume.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(message).category(FailureCategory::Data)
    }
    /// Provisioning, mounting, a command, space, teardown.
    pub fn setup(message: impl Into<String>) -> Self {
        Self::new(message).category(FailureCategory::Setup)
    }
    /// The driver broke its contract.
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(message).category(FailureCategory::Protocol)
    }
    /// Something took longer than its limit.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(message).category(FailureCategory::Timeout)
    }
    pub fn category(mut self, c: FailureCategory) -> Self {
        self.category = c;
        self
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
        let category = category_of(&e);
        Failure::new(e.to_string()).category(category)
    }
}

/// The category of a platform error: what kind of thing went wrong below the check.
pub fn category_of(e: &PlatformError) -> FailureCategory {
    match e {
        PlatformError::Timeout { .. } | PlatformError::DriverTimeout(_) => FailureCategory::Timeout,
        PlatformError::Protocol(_) => FailureCategory::Protocol,
        PlatformError::Command { .. }
        | PlatformError::Unsupported(_)
        | PlatformError::Capacity(_)
        | PlatformError::Other(_) => FailureCategory::Setup,
        PlatformError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            FailureCategory::Setup
        }
        PlatformError::Io { .. } => FailureCategory::Setup,
        PlatformError::Interrupted
        | PlatformError::Registry(_)
        | PlatformError::Infrastructure(_) => FailureCategory::Infrastructure,
    }
}

/// What a check records beyond pass/fail: metrics (the agent's JSON and timings), the volume
/// and warnings.
#[derive(Debug, Default)]
pub struct TrialData {
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Fingerprint of the (first) volume the check used.
    pub volume: Option<serde_json::Value>,
    /// What the check did differently from what its name says (see [`CheckCtx::warn`]).
    pub warnings: Vec<String>,
    /// The platform's waits during the trial (see [`crate::platform::timeline`]).
    pub timeline: Vec<crate::platform::timeline::Span>,
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
    pub kept: Arc<Mutex<Vec<KeptVolume>>>,
    /// The shared speed volumes of the run.
    pub speed: Arc<speed::SpeedVolumes>,
    /// When agents ran, to tell agent work from harness work.
    pub agent_clock: Arc<AgentClock>,
    /// `--speed-size`: the speed matrix's data set instead of the profile's.
    pub speed_size: Option<u64>,
    /// `--phase`: which part of `integrity::upgrade` this run does.
    pub phase: crate::phase::Phase,
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

    /// What the class's speed volume must hold (see [`Profile::speed_bytes_with`]).
    pub fn speed_volume_bytes(&self) -> u64 {
        self.profile.speed_bytes_with(self.speed_size)
    }

    pub fn agent_timeout(&self) -> Duration {
        self.class.timeouts.agent.0
    }

    /// Records a warning: the check passed, but did something differently from what its name
    /// says (an offline expansion for `expand`, a flattering cache for a speed figure). Shown in
    /// the table, the terse output and the result; `--strict` turns it into a failure. The same
    /// warning twice is kept once.
    pub fn warn(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let mut d = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if !d.warnings.contains(&msg) {
            d.warnings.push(msg);
        }
    }

    /// Takes what the volume noticed since the last call (`Volume::take_warnings`) as warnings;
    /// called after every volume and pod operation of a check.
    pub fn noticed(&self, vol: &mut dyn Volume) {
        for w in vol.take_warnings() {
            self.warn(w);
        }
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
        let mut vol = self.provision(suffix, size)?;
        let result = f(vol.as_mut());
        self.finish_volume(vol, result)
    }

    /// Provisions a volume named `<class>-<tag>[-suffix]` and records its provisioning time and
    /// fingerprint; the caller ends it with [`CheckCtx::finish_volume`] (or keeps it).
    pub fn provision(&self, suffix: &str, size: u64) -> Result<Box<dyn Volume>, Failure> {
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
        self.adopted(vol.as_mut());
        self.noticed(vol.as_mut());
        Ok(vol)
    }

    /// Records `vol` as the trial's volume (its fingerprint) unless one is already: the first a
    /// check provisioned, or one taken over from another run (`--phase after-upgrade`).
    pub fn adopted(&self, vol: &mut dyn Volume) {
        let mut d = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if d.volume.is_none() {
            d.volume = Some(vol.fingerprint());
        }
    }

    /// Destroys `vol` after `result`, or keeps it when `result` failed and --keep-on-failure is set.
    pub fn finish_volume<T>(
        &self,
        mut vol: Box<dyn Volume>,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.noticed(vol.as_mut());
        match result {
            Err(mut failure) if self.keep_on_failure => {
                let id = vol.id().to_string();
                let location = vol.keep();
                let k = KeptVolume {
                    class: self.class.name().to_string(),
                    trial: format!("{}::{}", self.class.name(), self.check.name()),
                    volume: id,
                    location,
                    ledgers: self.work_dir.display().to_string(),
                    message: String::new(),
                };
                let line = kept_line(&k);
                failure.message.push_str(&format!("\n{line}"));
                self.kept
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(KeptVolume { message: line, ..k });
                Err(failure)
            }
            Err(failure) => {
                if let Err(e) = vol.destroy() {
                    return Err(Failure::new(format!(
                        "{}\nand removing the volume failed: {e}",
                        failure.message
                    ))
                    .category(failure.category)
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

/// `volume X kept: image … on /dev/loop3, mounted at …; ledgers and acks in DIR; remove with …`.
pub fn kept_line(k: &KeptVolume) -> String {
    format!(
        "volume {} kept: {}; ledgers and acks of {} in {}; remove with `pvcheck cleanup`",
        k.volume, k.location, k.trial, k.ledgers
    )
}

/// Recreates the pod: the agent ends, the volume is unmounted (detached) and mounted again.
pub fn recreate(vol: &mut dyn Volume, pod: Box<dyn Pod>) -> Result<Box<dyn Pod>, Failure> {
    recreate_with(vol, pod, &mut |vol| {
        vol.start_pod()
            .map_err(|e| Failure::from(e).context("starting the pod again"))
    })
}

/// Starts a volume's pod again in a recreation (with its first work, where the caller gives
/// it one: [`Volume::start_pod_running`]).
pub type StartPod<'a> = dyn FnMut(&mut dyn Volume) -> Result<Box<dyn Pod>, Failure> + 'a;

/// [`recreate`], the new pod started by `start`.
pub fn recreate_with(
    vol: &mut dyn Volume,
    pod: Box<dyn Pod>,
    start: &mut StartPod<'_>,
) -> Result<Box<dyn Pod>, Failure> {
    vol.stop_pod(pod)
        .map_err(|e| Failure::from(e).context("stopping the pod"))?;
    start(vol)
}

/// [`recreate`], then what the volume noticed becomes the trial's warnings.
pub fn recreate_noticed(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
    pod: Box<dyn Pod>,
) -> Result<Box<dyn Pod>, Failure> {
    let r = recreate(vol, pod);
    ctx.noticed(vol);
    r
}

/// First 8 bytes of sha256(s), as a u64 below 2^53, so a double-precision JSON reader (jq,
/// JavaScript) reads seeds and volume ids exactly and a copied value reproduces the data.
pub fn derive_u64(s: &str) -> u64 {
    let h = sha2::Sha256::digest(s.as_bytes());
    u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]))
        & pvcheck_workloads::units::JSON_SAFE_MAX
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
