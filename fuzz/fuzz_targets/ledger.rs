//! The ledger reader (`pvcheck_workloads::integrity::ledger::Ledger::parse`): a ledger is
//! evidence kept off the volume and read back by `verify`; a damaged one must be refused with
//! one error, never crash the agent. An accepted ledger survives its own round trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pvcheck_workloads::integrity::ledger::Ledger;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Ledger::parse(text, Path::new("fuzz-ledger.json")) {
        Ok(l) => {
            let again = Ledger::parse(&l.to_json(), Path::new("fuzz-ledger.json"))
                .expect("a ledger the reader accepted must parse again after to_json");
            assert_eq!(again, l, "ledger round trip changed it");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
