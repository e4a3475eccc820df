//! The class-file loader (`pvcheck::config::parse_str`): any text gets classes or one error
//! line, never a panic, a hang or a stack overflow.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // class files are read with read_to_string: non-UTF-8 never reaches the parser
    };
    match pvcheck::config::parse_str(text, Path::new("fuzz.yaml"), Path::new("/nonexistent")) {
        Ok(classes) => {
            for c in &classes {
                let _ = c.name();
            }
        }
        Err(e) => {
            // The message is what the user sees: it must render, as one line.
            let line = e.to_string();
            assert!(!line.is_empty());
        }
    }
});
