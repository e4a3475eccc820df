//! Sizes and durations as users write them: always with a unit.
//!
//! A bare number is refused, because kubestr's `-z 45` silently meant something other than
//! what its user expected (kubestr#145). Binary prefixes only: `K`, `KiB` are both 1024.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a size or duration string was refused. The message is one line meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{0:?} has no unit: write it as e.g. 4KiB, 1GiB or 512B (a bare number is refused)")]
    SizeWithoutUnit(String),
    #[error(
        "{0:?} is not a size: expected a number followed by B, K, KiB, M, MiB, G, GiB, T or TiB"
    )]
    BadSize(String),
    #[error("{0:?} is too large")]
    SizeOverflow(String),
    #[error("{0:?} has no unit: write it as e.g. 500ms, 30s, 2m or 1h (a bare number is refused)")]
    DurationWithoutUnit(String),
    #[error("{0:?} is not a duration: expected a number followed by ms, s, m or h")]
    BadDuration(String),
}

/// A byte count parsed from a string with a unit. Displays in the largest exact binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Parses `4KiB`, `4K`, `1.5GiB`, `512B`. Fractions are allowed where the result is whole bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(UnitError::BadSize(s.to_string()));
    }
    let unit = unit.trim();
    let mult: u64 = match unit {
        "" => return Err(UnitError::SizeWithoutUnit(s.to_string())),
        "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(UnitError::BadSize(s.to_string())),
    };
    if let Some((whole, frac)) = num.split_once('.') {
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| UnitError::BadSize(s.to_string()))?
        };
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UnitError::BadSize(s.to_string()));
        }
        let denom = 10u128.pow(frac.len() as u32);
        let frac_n: u128 = frac
            .parse()
            .map_err(|_| UnitError::BadSize(s.to_string()))?;
        let total = (whole as u128) * (mult as u128) + frac_n * (mult as u128) / denom;
        if !(frac_n * (mult as u128)).is_multiple_of(denom) {
            return Err(UnitError::BadSize(s.to_string()));
        }
        u64::try_from(total).map_err(|_| UnitError::SizeOverflow(s.to_string()))
    } else {
        let n: u64 = num.parse().map_err(|_| UnitError::BadSize(s.to_string()))?;
        n.checked_mul(mult)
            .ok_or_else(|| UnitError::SizeOverflow(s.to_string()))
    }
}

/// Formats a byte count in the largest binary unit that divides it exactly (`4KiB`, `1GiB`, `513B`).
pub fn format_size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (m, u) in UNITS {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{}", n / m, u);
        }
    }
    format!("{n}B")
}

impl FromStr for Size {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Accept only strings: a YAML integer is a size without a unit and must be refused.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size with a unit, such as 1GiB or 4KiB")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Err(E::custom(UnitError::SizeWithoutUnit(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                Err(E::custom(UnitError::SizeWithoutUnit(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration parsed from a string with a unit (`500ms`, `30s`, `2m`, `1h`, `1.5s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// Parses a duration that carries a unit.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num == "." {
        return Err(UnitError::BadDuration(s.to_string()));
    }
    let secs_per: f64 = match unit.trim() {
        "" => return Err(UnitError::DurationWithoutUnit(s.to_string())),
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(UnitError::BadDuration(s.to_string())),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| UnitError::BadDuration(s.to_string()))?;
    let secs = n * secs_per;
    if !secs.is_finite() || secs > 1e9 {
        return Err(UnitError::BadDuration(s.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration compactly (`500ms`, `30s`, `2m`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.as_nanos().is_multiple_of(1_000_000) {
        return format!("{}us", d.as_micros());
    }
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl FromStr for Dur {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as 30s or 2m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(UnitError::DurationWithoutUnit(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(UnitError::DurationWithoutUnit(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The largest integer a double-precision JSON reader (jq, JavaScript, many dashboards) reads
/// exactly: 2^53 - 1. Seeds and volume ids that users copy back are drawn or derived below it.
pub const JSON_SAFE_MAX: u64 = (1 << 53) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size(" 2 MiB "), Ok(2 << 20));
    }

    /// kubestr#145: `-z 45` meant something nobody expected. We refuse it instead.
    #[test]
    fn bare_number_is_refused_with_a_message_saying_so() {
        let e = parse_size("45").unwrap_err();
        assert_eq!(e, UnitError::SizeWithoutUnit("45".into()));
        assert!(e.to_string().contains("no unit"));
        assert!(matches!(
            parse_duration("30"),
            Err(UnitError::DurationWithoutUnit(_))
        ));
    }

    #[test]
    fn junk_is_refused() {
        for s in ["", "KiB", "4XB", "1.2.3G", "-4K", "0.0001B"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert!(parse_size("99999999999T").is_err());
        for s in ["", "s", "4 weeks", "1.2.3s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn format_round_trips() {
        for n in [0u64, 1, 512, 4096, 1 << 30, 3 << 20, 4097] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
        for d in [
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(120),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn serde_refuses_integers() {
        let e = serde_json::from_str::<Size>("1024").unwrap_err();
        assert!(e.to_string().contains("no unit"), "{e}");
        let s: Size = serde_json::from_str("\"1GiB\"").unwrap();
        assert_eq!(s.0, 1 << 30);
    }
}
