//! flexVolume reply reading: `pvcheck::platform::local::flexvolume::protocol::classify(call,
//! &Output, timeout)`, kubelet's reading of a reply (stdout and stderr combined, Go's JSON rules).
//! A driver is third-party code and may print anything; every reply must be classified (Success,
//! Not supported, Failed or a breach, with notices) without a panic.
//!
//! Input layout: byte 0 picks the call, byte 1 the exit (< 200: that code, else a signal),
//! byte 2 bit 0 marks stdout as truncated, bit 1 a process left behind, bits 2-3 how many of the
//! first bytes of the rest went to stderr (0, 1, 8 or 64); the rest is the output, in order.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pvcheck::platform::local::flexvolume::call::{Captured, Exit, Output};
use pvcheck::platform::local::flexvolume::protocol::{Call, classify};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let call = Call::ALL[data[0] as usize % Call::ALL.len()];
    let exit = if data[1] < 200 {
        Exit::Code(i32::from(data[1]))
    } else {
        Exit::Signal(i32::from(data[1] - 200))
    };
    let rest = &data[3..];
    let split = [0usize, 1, 8, 64][usize::from((data[2] >> 2) & 3)].min(rest.len());
    let (stderr, stdout) = rest.split_at(split);
    let truncated = u64::from(data[2] & 1);
    let captured = |b: &[u8]| Captured {
        bytes: b.to_vec(),
        total: b.len() as u64 + truncated,
    };
    let out = Output {
        exit,
        stdout: captured(stdout),
        stderr: captured(stderr),
        combined: captured(rest),
        elapsed: Duration::from_millis(u64::from(data[2] >> 4) * 100),
        left_process: data[2] & 2 != 0,
    };
    let c = classify(call, &out, Duration::from_secs(1));
    let _ = format!("{:?}", c.verdict);
    for n in &c.notices {
        let _ = n.text.len();
    }
});
