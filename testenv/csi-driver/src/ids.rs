//! Random identifiers for volumes and snapshots.

use std::io::Read;

/// 32 hex digits from the kernel's random source (a clock-and-pid mix if it cannot be read,
/// which in a container without /dev is still unique enough for a test driver).
pub fn random_id() -> String {
    let mut buf = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mixed = nanos ^ (u128::from(std::process::id()) << 64);
        buf = mixed.to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
