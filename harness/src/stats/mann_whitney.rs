//! The one-sided Mann–Whitney U test (Wilcoxon rank-sum).
//!
//! Small samples (n₁ + n₂ ≤ [`EXACT_MAX_N`]) get the exact p-value: the permutation
//! distribution of x's rank sum over every way of choosing n₁ of the pooled values, counted by
//! dynamic programming over doubled mid-ranks, so ties are handled exactly too (R's
//! `wilcox.test` and scipy's `method="exact"` give up on ties; with tied values this equals
//! `coin::wilcox_test(distribution = "exact")` and an exhaustive `scipy.stats.permutation_test`).
//! Larger samples use the normal approximation with the tie-corrected variance and a
//! continuity correction (scipy's `method="asymptotic"`, R's `exact = FALSE, correct = TRUE`).
//!
//! With n₁ = n₂ = 3 the smallest one-sided p is 1/20 = 0.05 and with 5 against 5 it is
//! 1/252 ≈ 0.004: the number of repetitions bounds what can ever be called significant.

use super::normal;

/// Samples up to this many values in total get the exact p-value.
pub const EXACT_MAX_N: usize = 50;

/// Which way the alternative hypothesis points, for the first sample against the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// x tends to be larger than y.
    Greater,
    /// x tends to be smaller than y.
    Less,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of (x, y) pairs with x > y, ties counting ½.
    pub u: f64,
    /// One-sided p-value for the alternative asked.
    pub p: f64,
    /// Whether `p` is exact (else the normal approximation).
    pub exact: bool,
}

/// Tests `x` against `y`. `None` when a side is empty or holds a value that is not finite.
pub fn mann_whitney(x: &[f64], y: &[f64], alt: Alternative) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let ranks2 = doubled_midranks(x, y);
    let n = n1 + n2;
    let r2_x: u64 = ranks2[..n1].iter().sum();
    // U = R − n₁(n₁+1)/2, with R = r2_x / 2.
    let u = r2_x as f64 / 2.0 - (n1 * (n1 + 1)) as f64 / 2.0;
    if n <= EXACT_MAX_N {
        let p = exact_p(&ranks2, n1, r2_x, alt);
        return Some(MannWhitney { u, p, exact: true });
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let mean = n1f * n2f / 2.0;
    let ties = tie_term(&ranks2);
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if var <= 0.0 {
        // Every value equal: no evidence either way.
        return Some(MannWhitney {
            u,
            p: 1.0,
            exact: false,
        });
    }
    let sd = var.sqrt();
    let p = match alt {
        Alternative::Greater => normal::sf((u - mean - 0.5) / sd),
        Alternative::Less => normal::cdf((u - mean + 0.5) / sd),
    };
    Some(MannWhitney {
        u,
        p: p.clamp(0.0, 1.0),
        exact: false,
    })
}

/// Twice the mid-rank of every value, x's first then y's (integers, so sums are exact).
fn doubled_midranks(x: &[f64], y: &[f64]) -> Vec<u64> {
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let mut idx: Vec<usize> = (0..pooled.len()).collect();
    idx.sort_by(|&a, &b| pooled[a].total_cmp(&pooled[b]));
    let mut out = vec![0u64; pooled.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && pooled[idx[j + 1]] == pooled[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean (i+1 + j+1)/2; doubled: i + j + 2.
        for &k in &idx[i..=j] {
            out[k] = (i + j + 2) as u64;
        }
        i = j + 1;
    }
    out
}

/// Σ (t³ − t) over groups of tied values.
fn tie_term(ranks2: &[u64]) -> f64 {
    let mut sorted = ranks2.to_vec();
    sorted.sort_unstable();
    let mut sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        sum += t * t * t - t;
        i = j + 1;
    }
    sum
}

/// P(S ≥ s_obs) or P(S ≤ s_obs), S the doubled rank sum of n₁ values drawn without
/// replacement from all of them, every subset equally likely.
fn exact_p(ranks2: &[u64], n1: usize, s_obs: u64, alt: Alternative) -> f64 {
    let max_sum: usize = ranks2.iter().map(|&r| r as usize).sum();
    // ways[k][s]: subsets of size k of the values seen so far with doubled rank sum s.
    let width = max_sum + 1;
    let mut ways = vec![0f64; (n1 + 1) * width];
    ways[0] = 1.0;
    for (seen, &r) in ranks2.iter().enumerate() {
        let r = r as usize;
        let top = n1.min(seen + 1);
        for k in (1..=top).rev() {
            let (lower, upper) = ways.split_at_mut(k * width);
            let from = &lower[(k - 1) * width..k * width];
            let to = &mut upper[..width];
            for s in (r..width).rev() {
                let add = from[s - r];
                if add != 0.0 {
                    to[s] += add;
                }
            }
        }
    }
    let row = &ways[n1 * width..(n1 + 1) * width];
    let total: f64 = row.iter().sum();
    let s_obs = s_obs as usize;
    let tail: f64 = match alt {
        Alternative::Greater => row[s_obs.min(width)..].iter().sum(),
        Alternative::Less => row[..=s_obs.min(width - 1)].iter().sum(),
    };
    (tail / total).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: &[f64], y: &[f64], alt: Alternative) -> MannWhitney {
        mann_whitney(x, y, alt).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// Complete separation: the one-sided exact p is 1 / C(n₁+n₂, n₁). R:
    /// `wilcox.test(c(4,5,6), c(1,2,3), alternative = "greater")$p.value` = 0.05,
    /// `wilcox.test(6:10, 1:5, alternative = "greater")$p.value` = 0.003968254 (1/252).
    #[test]
    fn exact_p_of_complete_separation_is_one_over_the_binomial() {
        let r = p(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0], Alternative::Greater);
        assert!(r.exact);
        assert_eq!(r.u, 9.0);
        assert!(close(r.p, 0.05, 1e-12), "{}", r.p);
        let x: Vec<f64> = (6..=10).map(f64::from).collect();
        let y: Vec<f64> = (1..=5).map(f64::from).collect();
        let r = p(&x, &y, Alternative::Greater);
        assert!(close(r.p, 1.0 / 252.0, 1e-12), "{}", r.p);
        // The other direction: every outcome is at most this extreme.
        assert!(close(p(&x, &y, Alternative::Less).p, 1.0, 1e-12));
    }

    /// Reference values from scipy 1.17.1 (computed once; the tests need no Python):
    /// `scipy.stats.mannwhitneyu(x, y, alternative=…, method="exact")` where there are no
    /// ties, and an exhaustive `scipy.stats.permutation_test((x, y), <rank sum of x>,
    /// permutation_type="independent", n_resamples=np.inf)` where there are (scipy's "exact"
    /// ignores ties and gives 0.06796, 0.07540 and 0.2 for the tied cases below).
    #[test]
    // 3.14 is a measurement in the reference data set, not π.
    #[allow(clippy::approx_constant, clippy::type_complexity)]
    fn exact_p_values_match_scipy_with_and_without_ties() {
        let cases: [(&[f64], &[f64], Alternative, f64, f64); 5] = [
            // Hollander & Wolfe's example (scipy's docs), ties at 1.06 and 1.29.
            (
                &[1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30],
                &[0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29],
                Alternative::Greater,
                58.0,
                0.06495269436445907,
            ),
            // A 7 % drop at 5 against 5, one overlap: 2/252.
            (
                &[101.2, 99.8, 100.5, 98.9, 100.1],
                &[93.0, 91.5, 92.2, 99.0, 90.1],
                Alternative::Greater,
                24.0,
                0.007936507936507936,
            ),
            // Three tied pairs.
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                &[3.0, 4.0, 5.0, 6.0, 7.0],
                Alternative::Less,
                4.5,
                0.06349206349206349,
            ),
            (
                &[10.0, 11.0, 12.0],
                &[11.0, 13.0, 14.0],
                Alternative::Less,
                1.5,
                0.15,
            ),
            // Unequal sizes, 6 against 5.
            (
                &[0.9, 1.1, 1.0, 1.3, 0.8, 1.2],
                &[1.4, 1.25, 1.5, 1.05, 1.6],
                Alternative::Less,
                4.0,
                0.025974025974025976,
            ),
        ];
        for (i, (x, y, alt, u, want)) in cases.into_iter().enumerate() {
            let r = p(x, y, alt);
            assert!(r.exact, "case {i}");
            assert_eq!(r.u, u, "case {i}");
            assert!(close(r.p, want, 1e-9), "case {i}: {} vs {want}", r.p);
        }
    }

    /// 30 against 30 (beyond the exact range) with many ties. Reference: scipy 1.17.1
    /// `mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=True)`
    /// → U = 527, p = 0.12815334633044762.
    #[test]
    fn normal_approximation_with_ties_matches_scipy() {
        let x = [
            100.0, 101.0, 99.0, 96.0, 98.0, 95.0, 100.0, 107.0, 98.0, 97.0, 102.0, 102.0, 101.0,
            95.0, 100.0, 103.0, 93.0, 98.0, 90.0, 94.0, 91.0, 99.0, 94.0, 101.0, 101.0, 99.0, 87.0,
            97.0, 100.0, 101.0,
        ];
        let y = [
            89.0, 95.0, 92.0, 93.0, 102.0, 93.0, 97.0, 101.0, 94.0, 96.0, 98.0, 97.0, 91.0, 97.0,
            104.0, 89.0, 101.0, 98.0, 94.0, 107.0, 101.0, 91.0, 97.0, 100.0, 96.0, 100.0, 97.0,
            100.0, 104.0, 94.0,
        ];
        let r = p(&x, &y, Alternative::Greater);
        assert!(!r.exact);
        assert_eq!(r.u, 527.0);
        assert!(close(r.p, 0.12815334633044762, 1e-9), "{}", r.p);
    }

    /// The exact distribution must be a distribution: P(U ≥ u) + P(U ≤ u − ½…) style
    /// complements hold, and with every value tied there is no evidence at all.
    #[test]
    fn exact_tails_are_complementary_and_all_ties_give_one() {
        let x = [3.0, 1.0, 4.0, 1.0, 5.0];
        let y = [9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let g = p(&x, &y, Alternative::Greater).p;
        let l = p(&x, &y, Alternative::Less).p;
        // The two tails overlap exactly in the observed point, so they sum to more than 1.
        assert!(g + l >= 1.0 && g + l < 1.5, "{g} {l}");
        assert_eq!(
            p(&[2.0, 2.0], &[2.0, 2.0, 2.0], Alternative::Greater).p,
            1.0
        );
        assert!(mann_whitney(&[], &[1.0], Alternative::Less).is_none());
        assert!(mann_whitney(&[f64::NAN], &[1.0], Alternative::Less).is_none());
    }
}
