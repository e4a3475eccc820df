//! flexVolume reply parsing: the public entry point that exists today,
//! `pvcheck::platform::local::flexvolume::protocol::parse(call, &Output)`. A driver is third-party
//! code and may print anything; every reply must be classified (a reply or a protocol breach)
//! without a panic. Branch `flex` is rewriting this module: re-point this target at its new
//! entry point when it lands (the input layout below stays: call, exit, flags, stdout).
//!
//! Input layout: byte 0 picks the call, byte 1 the exit (< 200: that code, else a signal),
//! byte 2 bit 0 marks stdout as truncated, bit 1 a process left behind, bits 2-3 stderr bytes;
//! the rest is stdout.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pvcheck::platform::local::flexvolume::call::{Captured, Exit, Output};
use pvcheck::platform::local::flexvolume::protocol::{Call, parse};

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
    let stdout = data[3..].to_vec();
    let len = stdout.len() as u64;
    let out = Output {
        exit,
        stdout: Captured {
            bytes: stdout,
            total: if data[2] & 1 != 0 { len + 1 } else { len },
        },
        stderr: Captured {
            bytes: Vec::new(),
            total: u64::from((data[2] >> 2) & 3),
        },
        elapsed: Duration::from_millis(1),
        left_process: data[2] & 2 != 0,
    };
    match parse(call, &out) {
        Ok(reply) => {
            let _ = format!("{reply:?}");
        }
        Err(breach) => {
            let _ = breach.to_string();
        }
    }
});
