//! Completion latencies in nanoseconds, kept in an HDR histogram so that results of several
//! repetitions or pods can be merged exactly (serialized V2 + deflate, base64).

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::result::LatencySummary;

/// Highest latency kept exactly: one hour. Slower I/Os are clamped to it (and still counted).
pub const MAX_NS: u64 = 3_600_000_000_000;
/// 3 significant digits: 0.1 % bucket error, finer than fio's ~0.8 %.
pub const SIGFIG: u8 = 3;
/// What [`LatencyHistogram::encode`] produces, named in the result next to the histogram.
pub const ENCODING: &str = "hdrhistogram-v2-deflate-base64";

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram is not a V2 HdrHistogram: {0:?}")]
    Hdr(hdrhistogram::serialization::DeserializeError),
}

#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    h: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            h: Histogram::new_with_bounds(1, MAX_NS, SIGFIG).expect("constant bounds are valid"),
        }
    }

    /// Records one latency. Values above [`MAX_NS`] are clamped so nothing is dropped.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.h.saturating_record(ns);
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides: cannot fail.
        self.h.add(&other.h).expect("histograms share bounds");
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn inner(&self) -> &Histogram<u64> {
        &self.h
    }

    /// Percentiles from the histogram; `mean` is taken from the exact sum when the caller has it.
    pub fn summary(&self, exact_sum_ns: Option<u128>) -> LatencySummary {
        summarize(&self.h, exact_sum_ns)
    }

    /// Base64 of the V2 deflate serialization (what Java/Go/Rust HdrHistogram all read).
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.h, &mut buf)
            .expect("serializing into memory cannot fail");
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// The inverse of [`encode`](Self::encode): how the harness merges results.
    pub fn decode(s: &str) -> Result<Self, DecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim())?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(DecodeError::Hdr)?;
        let mut out = Self::new();
        out.h.add(&h).map_err(|_| {
            DecodeError::Hdr(hdrhistogram::serialization::DeserializeError::UsizeTypeTooSmall)
        })?;
        Ok(out)
    }
}

/// Summary of any u64 histogram of nanoseconds.
pub fn summarize(h: &Histogram<u64>, exact_sum_ns: Option<u128>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let mean = match exact_sum_ns {
        Some(sum) => sum as f64 / h.len() as f64,
        None => h.mean(),
    };
    LatencySummary {
        mean,
        min: h.min(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_1_to_10000_are_within_a_tenth_of_a_percent() {
        let mut h = LatencyHistogram::new();
        let mut sum = 0u128;
        for v in 1..=10_000u64 {
            h.record(v * 1000);
            sum += (v * 1000) as u128;
        }
        let s = h.summary(Some(sum));
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.001;
        assert!(close(s.p50, 5_000_000), "{}", s.p50);
        assert!(close(s.p90, 9_000_000), "{}", s.p90);
        assert!(close(s.p99, 9_900_000), "{}", s.p99);
        assert!(close(s.p999, 9_990_000), "{}", s.p999);
        assert!(close(s.max, 10_000_000), "{}", s.max);
        assert_eq!(s.mean, 5_000_500.0);
        assert!(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999);
        assert!(s.p999 <= s.p9999 && s.p9999 <= s.max);
    }

    #[test]
    fn encoded_histograms_round_trip_and_merge_like_the_raw_data() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for v in 0..1000u64 {
            a.record(1_000 + v);
            b.record(1_000_000 + v * 7);
        }
        let mut merged = LatencyHistogram::decode(&a.encode()).unwrap();
        merged.add(&LatencyHistogram::decode(&b.encode()).unwrap());
        let mut direct = a.clone();
        direct.add(&b);
        assert_eq!(merged.count(), 2000);
        assert_eq!(merged.summary(None), direct.summary(None));
        assert_eq!(
            merged.summary(None).p50,
            direct.inner().value_at_quantile(0.5)
        );
    }

    #[test]
    fn latencies_beyond_an_hour_are_clamped_not_dropped() {
        let mut h = LatencyHistogram::new();
        h.record(u64::MAX);
        h.record(0);
        assert_eq!(h.count(), 2);
        assert!(h.summary(None).max >= MAX_NS);
    }

    #[test]
    fn garbage_is_refused_when_decoding() {
        assert!(LatencyHistogram::decode("not base64!").is_err());
        assert!(LatencyHistogram::decode("AAAA").is_err());
    }

    #[test]
    fn empty_histogram_summarizes_to_zeros() {
        assert_eq!(
            LatencyHistogram::new().summary(None),
            LatencySummary::default()
        );
    }
}
