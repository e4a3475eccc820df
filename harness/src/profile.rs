//! `--profile quick|standard|thorough`: how much work each check does.
//!
//! `quick` (the default) keeps the whole local default suite under two minutes on a 2-core
//! machine; `standard` and `thorough` follow the speed engine's profiles (issue 3) and write
//! larger datasets.

use std::time::Duration;

/// The profile names the agent's `bench --profile` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Quick,
    Standard,
    Thorough,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Standard => "standard",
            Profile::Thorough => "thorough",
        }
    }
    /// Size of the integrity dataset written by `write`.
    pub fn dataset_bytes(self) -> u64 {
        match self {
            Profile::Quick => 32 << 20,
            Profile::Standard => 1 << 30,
            Profile::Thorough => 4 << 30,
        }
    }
    /// Fraction of blocks `rewrite` overwrites with the next generation.
    pub fn rewrite_fraction(self) -> f64 {
        0.1
    }
    /// The durability stream is killed at a random moment in this window after it starts.
    pub fn kill_window(self) -> (Duration, Duration) {
        match self {
            Profile::Quick => (Duration::from_millis(300), Duration::from_millis(1200)),
            Profile::Standard => (Duration::from_secs(2), Duration::from_secs(10)),
            Profile::Thorough => (Duration::from_secs(5), Duration::from_secs(30)),
        }
    }
    /// The agent's profile of the same name (`bench --profile`).
    pub fn agent(self) -> pvcheck_workloads::speed::matrix::Profile {
        use pvcheck_workloads::speed::matrix::Profile as P;
        match self {
            Profile::Quick => P::Quick,
            Profile::Standard => P::Standard,
            Profile::Thorough => P::Thorough,
        }
    }
    /// Repetitions of each speed workload when `--repeat` is not given: a regression gate
    /// needs at least 5 on each side (issue 12), a smoke test one.
    pub fn default_repeat(self) -> u32 {
        match self {
            Profile::Quick => 1,
            Profile::Standard | Profile::Thorough => 5,
        }
    }
    /// The bench file size of the speed matrix (the agent's profile, one file the data
    /// workloads share), plus room beside it for fsync-latency's 22 MiB file and the metadata
    /// files.
    pub fn speed_bytes(self) -> u64 {
        self.speed_bytes_with(None)
    }
    /// [`Profile::speed_bytes`] with the data set `--speed-size` gives instead of the profile's.
    pub fn speed_bytes_with(self, speed_size: Option<u64>) -> u64 {
        let data = speed_size.unwrap_or(self.agent().size());
        let room = match self {
            Profile::Quick => 32 << 20,
            Profile::Standard | Profile::Thorough => 64 << 20,
        };
        data + room
    }
}
