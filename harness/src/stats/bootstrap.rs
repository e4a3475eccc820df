//! A seeded percentile bootstrap of the ratio of medians, new over old.
//!
//! Each resample draws n₁ values of the old side and n₂ of the new side with replacement
//! (independently: the repetitions of two runs are not paired) and takes the ratio of their
//! medians; the interval is the central `confidence` share of the resampled ratios. The
//! generator is Xoshiro256++ seeded by the caller, so one input always gives one interval
//! (a comparison that flips between runs of `compare` would be worthless).

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::summary::{median, median_of_sorted};

/// The ratio of medians and its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RatioInterval {
    /// median(new) / median(old).
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    pub resamples: u32,
    pub confidence: f64,
}

/// At least this many resamples are drawn whatever the caller asks (issue 12).
pub const MIN_RESAMPLES: u32 = 10_000;

/// `None` when a side is empty, a value is not finite or the old median is not positive.
pub fn ratio_of_medians(
    old: &[f64],
    new: &[f64],
    resamples: u32,
    confidence: f64,
    seed: u64,
) -> Option<RatioInterval> {
    let (m_old, m_new) = (median(old)?, median(new)?);
    if m_old <= 0.0 || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let resamples = resamples.max(MIN_RESAMPLES);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut buf_old = vec![0.0; old.len()];
    let mut buf_new = vec![0.0; new.len()];
    let mut ratios = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let a = resampled_median(&mut rng, old, &mut buf_old);
        let b = resampled_median(&mut rng, new, &mut buf_new);
        // A resampled old median of 0 (possible only with zeros in the data) has no ratio.
        ratios.push(if a > 0.0 { b / a } else { f64::INFINITY });
    }
    ratios.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        // The percentile by the nearest-rank rule on the sorted resamples.
        let i = ((q * resamples as f64).ceil() as usize).clamp(1, ratios.len()) - 1;
        ratios[i]
    };
    Some(RatioInterval {
        ratio: m_new / m_old,
        low: at(tail),
        high: at(1.0 - tail),
        resamples,
        confidence,
    })
}

/// A percentile bootstrap interval of one sample's median (the whiskers of the charts).
pub fn median_interval(
    xs: &[f64],
    resamples: u32,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    median(xs)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut buf = vec![0.0; xs.len()];
    let n = resamples.max(1);
    let mut meds: Vec<f64> = (0..n)
        .map(|_| resampled_median(&mut rng, xs, &mut buf))
        .collect();
    meds.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| meds[((q * n as f64).ceil() as usize).clamp(1, meds.len()) - 1];
    Some((at(tail), at(1.0 - tail)))
}

fn resampled_median(rng: &mut Xoshiro256PlusPlus, xs: &[f64], buf: &mut [f64]) -> f64 {
    let n = xs.len() as u64;
    for slot in buf.iter_mut() {
        // Lemire's multiply-shift: an index in 0..n without a division.
        let i = ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as usize;
        *slot = xs[i];
    }
    // Insertion sort: a handful of values, faster than the general sort.
    for i in 1..buf.len() {
        let v = buf[i];
        let mut j = i;
        while j > 0 && buf[j - 1] > v {
            buf[j] = buf[j - 1];
            j -= 1;
        }
        buf[j] = v;
    }
    median_of_sorted(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_interval_and_another_seed_may_not() {
        let old = [100.0, 102.0, 98.0, 101.0, 99.0];
        let new = [90.0, 91.0, 89.5, 92.0, 90.5];
        let a = ratio_of_medians(&old, &new, 10_000, 0.95, 7).unwrap();
        let b = ratio_of_medians(&old, &new, 10_000, 0.95, 7).unwrap();
        assert_eq!(a, b);
        assert!((a.ratio - 0.905).abs() < 1e-12, "{a:?}");
        assert!(a.low <= a.ratio && a.ratio <= a.high, "{a:?}");
        // The interval cannot reach beyond the most extreme ratios the data allows.
        assert!(a.low >= 89.5 / 102.0 && a.high <= 92.0 / 98.0, "{a:?}");
    }

    #[test]
    fn fewer_than_ten_thousand_resamples_are_never_drawn() {
        let r = ratio_of_medians(&[1.0, 2.0], &[1.0, 2.0], 10, 0.95, 1).unwrap();
        assert_eq!(r.resamples, MIN_RESAMPLES);
    }

    #[test]
    fn identical_constant_samples_give_a_point_interval_at_one() {
        let r = ratio_of_medians(&[5.0; 5], &[5.0; 5], 10_000, 0.95, 3).unwrap();
        assert_eq!((r.ratio, r.low, r.high), (1.0, 1.0, 1.0));
    }

    #[test]
    fn no_interval_without_a_positive_old_median() {
        assert!(ratio_of_medians(&[0.0, 0.0], &[1.0], 10_000, 0.95, 1).is_none());
        assert!(ratio_of_medians(&[], &[1.0], 10_000, 0.95, 1).is_none());
    }
}
