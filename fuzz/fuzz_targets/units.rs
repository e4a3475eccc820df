//! Sizes and durations with units (`pvcheck_workloads::units`): they come from class files and
//! flags. Anything is parsed or refused without a panic (no overflow), and a parsed value
//! formats to text that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvcheck_workloads::units::{format_duration, format_size, parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = parse_size(text) {
        let shown = format_size(n);
        let back = parse_size(&shown).unwrap_or_else(|e| panic!("{shown:?} (from {text:?}) does not parse back: {e}"));
        assert_eq!(back, n, "{text:?} -> {n} -> {shown:?} -> {back}");
    }
    if let Ok(d) = parse_duration(text) {
        let _ = format_duration(d);
    }
});
