//! The durability acknowledgement stream reader
//! (`pvcheck_workloads::integrity::durability::parse_acks_text`): the stream is cut by a
//! SIGKILL at a random moment, so every prefix of a valid stream and any damage to it must be
//! read or refused, never crash `verify`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pvcheck_workloads::integrity::durability::parse_acks_text;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_acks_text(text, Path::new("fuzz-acks.jsonl")) {
        Ok((_header, acked)) => {
            // Sorted and unique, as verify relies on.
            assert!(acked.windows(2).all(|w| w[0] < w[1]), "acks not sorted/unique");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
