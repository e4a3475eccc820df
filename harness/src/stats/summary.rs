//! Plain summaries of a handful of repetitions.

/// The median (the mean of the two middle values for an even count); `None` when empty or
/// when a value is not finite.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some(median_of_sorted(&v))
}

/// The median of an already sorted, non-empty slice.
pub fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Sample coefficient of variation (standard deviation with n − 1, over the mean); `None`
/// below two values or when the mean is not positive (no scale to relate the spread to).
pub fn cv(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if mean.is_nan() || mean <= 0.0 {
        return None;
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(var.sqrt() / mean)
}

/// 1.4826 × median absolute deviation / median: a coefficient of variation that one outlier
/// cannot inflate (1.4826 makes it estimate σ/μ for normal data). `None` below two values or
/// with a median that is not positive.
pub fn robust_spread(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = median(xs)?;
    if m <= 0.0 {
        return None;
    }
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    Some(1.4826 * median(&dev)? / m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    /// One cold repetition among five steady ones: the CV says over 40 %, the robust spread
    /// only what the steady four vary.
    #[test]
    fn robust_spread_ignores_one_outlier() {
        let xs = [734.0, 11_000.0, 11_200.0, 10_900.0, 11_100.0];
        assert!(cv(&xs).unwrap() > 0.4);
        // median 11 000, deviations 10 266, 0, 200, 100, 100 → MAD 100.
        assert!((robust_spread(&xs).unwrap() - 1.4826 * 100.0 / 11_000.0).abs() < 1e-12);
        assert_eq!(robust_spread(&[1.0]), None);
    }

    #[test]
    fn cv_matches_a_hand_computation() {
        // mean 20, sample sd 10.
        assert!((cv(&[10.0, 20.0, 30.0]).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(cv(&[5.0]), None);
        assert_eq!(cv(&[0.0, 0.0]), None);
    }
}
