//! The shift between two samples: the Hodges–Lehmann estimate with an exact, distribution-free
//! confidence interval (the inversion of the Mann–Whitney test; Hollander, Wolfe & Chicken,
//! *Nonparametric Statistical Methods*, 3rd ed., §4.3; R's `wilcox.test(conf.int = TRUE)`).
//!
//! For samples x (base, n values) and y (new, m values), the n·m pairwise differences
//! `y_j − x_i`, sorted, are D₍₁₎ ≤ … ≤ D₍ₙₘ₎. Their median estimates the shift, and
//! `[D₍ₖ₎, D₍ₙₘ₊₁₋ₖ₎]` covers the true shift with probability at least `1 − 2·P(U ≤ k − 1)`,
//! where U has the Mann–Whitney null distribution for sizes n and m — whatever the (continuous)
//! distribution of the figures. With 5 against 5: `P(U ≤ 2) = 4/252`, so `k = 3` gives a
//! one-sided bound at 98.4 %; `P(U ≤ 0) = 1/252`, so the smallest difference D₍₁₎ is a 99.6 %
//! lower bound. The gate applies it to logarithms, so the shift is a ratio.
//!
//! No bound exists at a level when even `P(U ≤ 0) = 1/C(n+m, n)` exceeds its α (3 against 3
//! at α = 2.5 %): then the interval is unbounded on that side, and only more repetitions help.

use super::normal;

/// Above this many pairs the null distribution of U is approximated by the normal (with a
/// continuity correction); below it, counted exactly.
const EXACT_MAX_PAIRS: usize = 2_500;

/// A shift and its interval, in the unit of the inputs (log ratios in the gate).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Shift {
    /// The Hodges–Lehmann estimate: the median of the pairwise differences.
    pub estimate: f64,
    /// The exact lower and upper bounds (−∞ / +∞ when the sample sizes allow no bound).
    pub low: f64,
    pub high: f64,
    /// The coverage each one-sided bound achieves (≥ 1 − α), or 0 when unbounded.
    pub one_sided_confidence: f64,
    /// The smallest and largest pairwise differences (every new value against every base one).
    pub min: f64,
    pub max: f64,
}

/// `None` when a side is empty or holds a value that is not finite. `alpha` is the one-sided
/// error of each bound (0.025 for a two-sided 95 % interval).
pub fn shift(base: &[f64], new: &[f64], alpha: f64) -> Option<Shift> {
    if base.is_empty() || new.is_empty() || !base.iter().chain(new).all(|v| v.is_finite()) {
        return None;
    }
    let mut d: Vec<f64> = new
        .iter()
        .flat_map(|y| base.iter().map(move |x| y - x))
        .collect();
    d.sort_unstable_by(f64::total_cmp);
    let pairs = d.len();
    let estimate = super::summary::median_of_sorted(&d);
    let (k, tail) = order_statistic(base.len(), new.len(), alpha);
    let (low, high, one_sided_confidence) = if k == 0 {
        (f64::NEG_INFINITY, f64::INFINITY, 0.0)
    } else {
        (d[k - 1], d[pairs - k], 1.0 - tail)
    };
    Some(Shift {
        estimate,
        low,
        high,
        one_sided_confidence,
        min: d[0],
        max: d[pairs - 1],
    })
}

/// The largest k (1-based) with `P(U ≤ k − 1) ≤ alpha` for sizes n and m, and that
/// probability; `(0, 1.0)` when not even k = 1 qualifies.
pub fn order_statistic(n: usize, m: usize, alpha: f64) -> (usize, f64) {
    let pairs = n * m;
    if pairs <= EXACT_MAX_PAIRS {
        let cdf = null_cdf(n, m);
        // cdf[u] = P(U ≤ u); the bound uses D₍ₖ₎ with k − 1 = u.
        match cdf.iter().rposition(|&p| p <= alpha) {
            Some(u) if u < pairs.div_ceil(2) => (u + 1, cdf[u]),
            Some(u) => (pairs.div_ceil(2), cdf[u.min(pairs.div_ceil(2) - 1)]),
            None => (0, 1.0),
        }
    } else {
        // U ≈ N(nm/2, nm(n+m+1)/12); P(U ≤ u) ≈ Φ((u + ½ − nm/2)/σ).
        let mean = pairs as f64 / 2.0;
        let sd = (pairs as f64 * (n + m + 1) as f64 / 12.0).sqrt();
        let mut u = 0usize;
        while u + 1 < pairs.div_ceil(2) && normal::cdf((u as f64 + 1.5 - mean) / sd) <= alpha {
            u += 1;
        }
        let p = normal::cdf((u as f64 + 0.5 - mean) / sd);
        if p > alpha { (0, 1.0) } else { (u + 1, p) }
    }
}

/// P(U ≤ u) for u = 0 … n·m under the null hypothesis (no ties): the number of arrangements of
/// n x's and m y's with U = u, counted by the classic recursion over the largest value, divided
/// by C(n+m, n). Counts are kept as f64 (exact up to 2⁵³, approximate beyond: fine for a p).
fn null_cdf(n: usize, m: usize) -> Vec<f64> {
    let max = n * m;
    // f[j][u]: arrangements of i x's and j y's with U = u, for the current i (rows of j).
    let mut f: Vec<Vec<f64>> = (0..=m)
        .map(|_| {
            let mut v = vec![0.0; max + 1];
            v[0] = 1.0;
            v
        })
        .collect();
    for _i in 1..=n {
        // Adding one x: the new top value is an x (U grows by j: it beats every y) or a y.
        let mut g: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; m + 1];
        g[0][0] = 1.0;
        for j in 1..=m {
            for u in 0..=max {
                let from_x = if u >= j { f[j][u - j] } else { 0.0 };
                g[j][u] = from_x + g[j - 1][u];
            }
        }
        f = g;
    }
    let counts = &f[m];
    let total: f64 = counts.iter().sum();
    let mut acc = 0.0;
    counts
        .iter()
        .map(|c| {
            acc += c;
            acc / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_distribution_of_five_against_five_has_the_textbook_tail() {
        let cdf = null_cdf(5, 5);
        assert_eq!(cdf.len(), 26);
        for (u, count) in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 7.0), (4, 12.0)] {
            assert!((cdf[u] - count / 252.0).abs() < 1e-12, "u = {u}");
        }
        assert!((cdf[25] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_order_statistic_is_the_largest_one_within_alpha() {
        assert_eq!(order_statistic(5, 5, 0.025).0, 3);
        assert_eq!(order_statistic(5, 5, 0.05).0, 5);
        assert_eq!(order_statistic(5, 5, 0.004).0, 1);
        // 3 against 3: P(U = 0) = 1/20 > 2.5 %: no bound.
        assert_eq!(order_statistic(3, 3, 0.025), (0, 1.0));
        assert_eq!(order_statistic(3, 3, 0.05).0, 1);
    }

    #[test]
    fn the_normal_approximation_agrees_with_the_exact_count_where_both_apply() {
        // 40 against 40: 1600 pairs, counted exactly; the approximation must pick nearly the same k.
        let exact = order_statistic(40, 40, 0.025).0;
        let mean = 800.0f64;
        let sd = (1600.0f64 * 81.0 / 12.0).sqrt();
        let approx = (mean - 1.96 * sd).floor() as usize;
        assert!(
            exact.abs_diff(approx) <= 2,
            "exact {exact}, approx {approx}"
        );
        // Beyond the exact range the approximation is used and stays sane.
        let (k, p) = order_statistic(60, 60, 0.025);
        assert!(k > 1000 && k < 1800 && p <= 0.025, "k {k}, p {p}");
    }

    #[test]
    fn a_clean_shift_is_estimated_and_bounded() {
        let base = [10.0, 11.0, 12.0, 13.0, 14.0];
        let new = [20.0, 21.0, 22.0, 23.0, 24.0];
        let s = shift(&base, &new, 0.025).unwrap();
        assert_eq!(s.estimate, 10.0);
        assert_eq!((s.min, s.max), (6.0, 14.0));
        // D(3) and D(23) of the 25 differences 6,7,7,8,8,8,9,9,9,9,10,…
        assert_eq!((s.low, s.high), (7.0, 13.0));
        assert!((s.one_sided_confidence - (1.0 - 4.0 / 252.0)).abs() < 1e-12);
    }

    #[test]
    fn too_few_values_give_an_unbounded_interval_not_a_verdict() {
        let s = shift(&[1.0, 2.0, 3.0], &[7.0, 8.0, 9.0], 0.025).unwrap();
        assert_eq!((s.low, s.high), (f64::NEG_INFINITY, f64::INFINITY));
        assert_eq!(s.one_sided_confidence, 0.0);
        assert_eq!(s.min, 4.0);
    }

    #[test]
    fn empty_or_non_finite_samples_have_no_shift() {
        assert!(shift(&[], &[1.0], 0.025).is_none());
        assert!(shift(&[1.0, f64::NAN], &[1.0], 0.025).is_none());
    }

    /// The coverage promise, checked by simulation: with no shift, the lower bound lies above
    /// zero in at most α of the samples (seeded, so the test is deterministic).
    #[test]
    fn the_lower_bound_exceeds_a_zero_shift_at_most_alpha_of_the_time() {
        use rand_core::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let trials = 4000;
        let mut above = 0;
        for _ in 0..trials {
            let a: Vec<f64> = (0..5).map(|_| unit()).collect();
            let b: Vec<f64> = (0..5).map(|_| unit()).collect();
            if shift(&a, &b, 0.025).unwrap().low > 0.0 {
                above += 1;
            }
        }
        // 4/252 = 1.6 % expected; allow sampling error.
        assert!(
            above as f64 / (trials as f64) < 0.025,
            "{above} of {trials}"
        );
    }
}
