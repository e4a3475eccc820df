//! The standard matrix: named workloads the harness runs one after another, per profile.
//!
//! Order and choice follow the issue: IOPS (4 KiB QD64), latency (4 KiB QD1), bandwidth
//! (1 MiB QD16), a 70/30 mix, then etcd's fsync check and metadata operations.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::job::{JobKind, JobParams};

/// How long and how large each workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// About 1 s per job after a 0.5 s ramp, 128 MiB: a smoke test.
    Quick,
    /// 20 s per job after a 5 s ramp, 4 GiB (kbench's timings).
    Standard,
    /// 60 s per job after a 5 s ramp, 4 GiB.
    Thorough,
}

impl Profile {
    pub fn runtime(self) -> Duration {
        match self {
            Profile::Quick => Duration::from_secs(1),
            Profile::Standard => Duration::from_secs(20),
            Profile::Thorough => Duration::from_secs(60),
        }
    }
    pub fn ramp(self) -> Duration {
        match self {
            Profile::Quick => Duration::from_millis(500),
            Profile::Standard | Profile::Thorough => Duration::from_secs(5),
        }
    }
    pub fn size(self) -> u64 {
        match self {
            Profile::Quick => 128 << 20,
            Profile::Standard | Profile::Thorough => 4 << 30,
        }
    }
    /// The IOPS sampling interval: at least 10 samples in the measured time of quick.
    pub fn sample_interval(self) -> Duration {
        match self {
            Profile::Quick => Duration::from_millis(100),
            Profile::Standard | Profile::Thorough => Duration::from_millis(500),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Standard => "standard",
            Profile::Thorough => "thorough",
        }
    }
}

/// One named entry of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub job: JobParams,
}

/// The names, in the order the harness runs them.
pub const NAMES: [&str; 9] = [
    "randread-4k-qd64",
    "randwrite-4k-qd64",
    "randread-4k-qd1",
    "randwrite-4k-qd1",
    "read-1m-qd16",
    "write-1m-qd16",
    "randrw70-4k-qd64",
    "fsync-latency",
    "metadata",
];

/// etcd's documented fio check writes 22 MiB in 2300-byte blocks, each followed by fdatasync.
const ETCD_BS: u64 = 2300;
const ETCD_SIZE: u64 = 22 << 20;
/// Files per metadata batch (size / bs): enough for a directory that is not trivially small.
const META_FILES: u64 = 256;

/// The workload called `name` in `profile`, if it exists.
pub fn workload(profile: Profile, name: &str) -> Option<Workload> {
    let p = |rw, bs: u64, iodepth| JobParams {
        rw,
        bs,
        iodepth,
        jobs: 1,
        size: profile.size(),
        runtime_s: profile.runtime().as_secs_f64(),
        ramp_s: profile.ramp().as_secs_f64(),
        direct: true,
        read_pct: None,
        fsync_every: 0,
        spin_wait_us: super::job::DEFAULT_SPIN_WAIT_US,
    };
    let job = match name {
        "randread-4k-qd64" => p(JobKind::Randread, 4096, 64),
        "randwrite-4k-qd64" => p(JobKind::Randwrite, 4096, 64),
        "randread-4k-qd1" => p(JobKind::Randread, 4096, 1),
        "randwrite-4k-qd1" => p(JobKind::Randwrite, 4096, 1),
        "read-1m-qd16" => p(JobKind::Read, 1 << 20, 16),
        "write-1m-qd16" => p(JobKind::Write, 1 << 20, 16),
        "randrw70-4k-qd64" => JobParams {
            read_pct: Some(70),
            ..p(JobKind::Randrw, 4096, 64)
        },
        // etcd's WAL writes go through the page cache and are made durable by fdatasync.
        "fsync-latency" => JobParams {
            size: ETCD_SIZE.min(profile.size()),
            direct: false,
            fsync_every: 1,
            ..p(JobKind::FsyncLatency, ETCD_BS, 1)
        },
        "metadata" => JobParams {
            size: META_FILES * 4096,
            direct: false,
            ..p(JobKind::Metadata, 4096, 1)
        },
        _ => return None,
    };
    Some(Workload {
        name: name.to_string(),
        job,
    })
}

/// All workloads of a profile, in the order they are run.
pub fn workloads(profile: Profile) -> Vec<Workload> {
    NAMES
        .iter()
        .map(|n| workload(profile, n).expect("every listed name is defined"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_runs_in_the_documented_order_and_every_name_resolves() {
        let w = workloads(Profile::Quick);
        let names: Vec<_> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, NAMES);
        assert_eq!(w[0].job.iodepth, 64);
        assert_eq!(w[4].job.bs, 1 << 20);
        assert_eq!(w[6].job.read_pct, Some(70));
        assert!(workload(Profile::Quick, "nope").is_none());
    }

    #[test]
    fn profiles_set_time_and_size() {
        let q = workload(Profile::Quick, "randread-4k-qd1").unwrap().job;
        assert_eq!((q.runtime_s, q.ramp_s, q.size), (1.0, 0.5, 128 << 20));
        let s = workload(Profile::Standard, "randread-4k-qd1").unwrap().job;
        assert_eq!((s.runtime_s, s.ramp_s, s.size), (20.0, 5.0, 4 << 30));
        let t = workload(Profile::Thorough, "randread-4k-qd1").unwrap().job;
        assert_eq!(t.runtime_s, 60.0);
    }
}
