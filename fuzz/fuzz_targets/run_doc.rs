//! The result-file reader behind `pvcheck compare`, `baseline` and the gate
//! (`pvcheck::compare::RunDoc::from_value`), then everything that reads what it accepted: the
//! comparison, a baseline built from it, and the comparison table. Result files come back from
//! other machines, CI artifacts and hand edits; a damaged one must be refused with one error,
//! never crash the gate.
//!
//! Input layout: two JSON documents separated by a NUL byte (JSON text holds no raw NUL): the
//! base and the new run. Without a NUL the same document is both (the gate must refuse the
//! same run on both sides, not crash on it). The first byte's low bit is `--allow-mismatch`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pvcheck::compare::{RunDoc, compare};

fn read(bytes: &[u8], name: &str) -> Option<RunDoc> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match RunDoc::from_value(Path::new(name), v) {
        Ok(doc) => Some(doc),
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error for {name}");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (base, new) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let Some(base) = read(base, "base.json") else {
        return;
    };
    let _ = pvcheck::baseline::build(std::slice::from_ref(&base), "fuzz", true)
        .map_err(|e| e.to_string());
    let Some(new) = read(new, "new.json") else {
        return;
    };
    match compare(base, new, flags & 1 == 1) {
        Ok(report) => {
            let _ = pvcheck::report::compare_table::render(&report);
            let _ = report.summary();
            let _ = report.exit_code(flags & 2 == 2);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
