//! Time limits must be limits: `0s` would fail every trial at once (or, read as "none", hang a
//! run on a stuck driver), so zero is refused where the class is loaded, naming the field.

use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::spec::{ClassSpec, LocalKind};

/// Refuses a zero duration in `timeouts:` and in a flexVolume class's call limits.
pub fn check(class: &ClassSpec, index: usize, file: &Path) -> Result<(), ConfigError> {
    let t = &class.timeouts;
    let mut limits: Vec<(&str, Duration)> = vec![
        ("timeouts.provision", t.provision.0),
        ("timeouts.upgrade", t.upgrade.0),
        ("timeouts.agent", t.agent.0),
    ];
    if let Some(LocalKind::Flexvolume(f)) = &class.local {
        if let Some(d) = f.call_timeout {
            limits.push(("local.flexvolume.call_timeout", d.0));
        }
        if let Some(d) = f.waitforattach_timeout {
            limits.push(("local.flexvolume.waitforattach_timeout", d.0));
        }
    }
    for (field, d) in limits {
        if d.is_zero() {
            return Err(ConfigError::new(
                file,
                Some(class.line()),
                Some(format!("classes[{index}].{field}")),
                "a time limit of 0 fails at once: give a positive duration such as 30s or 2m",
            ));
        }
    }
    Ok(())
}
