//! Change points in a series: E-Divisive means (Matteson & James, "A Nonparametric Approach
//! for Multiple Change Point Analysis of Multivariate Data", JASA 109(505), 2014), in the 1-D
//! form MongoDB's signal-processing-algorithms and Apache Otava (Hunter) apply to nightly
//! performance figures. Pure: no I/O, no clock; the same input and seed give the same answer.
//!
//! **The statistic.** For a split of a segment `Z` into `X = Z[..τ]` and `Y = Z[τ..]` (sizes
//! `n`, `m`) and the exponent α = 1 (the paper's usual choice, which makes the energy distance
//! sensitive to any change of distribution, not only of the mean):
//!
//! ```text
//! Ê(X, Y) = 2/(nm) Σᵢⱼ |Xᵢ − Yⱼ| − C(n,2)⁻¹ Σᵢ<ₖ |Xᵢ − Xₖ| − C(m,2)⁻¹ Σⱼ<ₖ |Yⱼ − Yₖ|
//! Q̂(X, Y) = nm/(n + m) · Ê(X, Y)
//! ```
//!
//! The candidate is the τ with the largest Q̂ over every split that leaves at least
//! [`Params::min_segment`] points on each side (as signal-processing-algorithms and Otava do,
//! the second part runs to the segment's end; the paper also maximises over that end κ).
//!
//! **Significance.** Hierarchically, as in the paper: at each step the best candidate over all
//! current segments is tested by a permutation test. Each of [`Params::permutations`] rounds
//! shuffles the values *within* each current segment (so the change points already found stay)
//! and takes the largest Q̂ any segment then reaches; the p-value is
//! `(1 + #{rounds reaching the observed Q̂}) / (1 + rounds)`. The candidate is kept when
//! `p ≤` [`Params::alpha`], and the search goes on in the new segments; the first candidate
//! that is not significant ends it. A round loop stops early once the p-value can no longer
//! come below α (the decision is the same; only rejected candidates' p-values are left
//! unfinished, and they are not reported).
//!
//! The permutations come from Xoshiro256++ seeded by [`Params::seed`] (callers derive it from
//! the series' name), so results are reproducible. Computing every split's Q̂ of a segment of L
//! points costs O(L log L) (running rank sums in a Fenwick tree), so a round over a year of
//! nights is a few hundred microseconds.

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Permutation rounds per tested candidate. With 999 rounds the smallest p is 0.001 and a p of
/// 0.01 is resolved to about ±0.003 (binomial standard error), enough for the α below.
pub const PERMUTATIONS: usize = 999;
/// Significance level of each step. 0.01: pure noise shows a change point in about 1 % of
/// series (`pure_noise_rarely_has_a_change_point` asserts at most 5 %), and a change point
/// alone never fails a nightly — the newest segment must also be worse than the class's
/// threshold. Otava's 0.001 suits its t-test on long series; here a 5-night step could not
/// reach it before 14 nights (2/C(n, 5) ≤ 0.001), nor be resolved by 999 permutations.
pub const ALPHA: f64 = 0.01;
/// Fewest points on each side of a change point. 5 nights: a segment's median then rests on
/// five runs (each itself a median of repetitions), one or two odd nights cannot make a
/// segment, and a regression is called within a working week. Chromium's dashboard takes 6;
/// 5 also gives the shortest judgeable history ([`min_judgeable_len`]: 11 nights, against 12
/// for 4 and for 6).
pub const MIN_SEGMENT: usize = 5;

/// How the search runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub permutations: usize,
    pub alpha: f64,
    /// At least 2 (a segment's within-distance needs two points).
    pub min_segment: usize,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            permutations: PERMUTATIONS,
            alpha: ALPHA,
            min_segment: MIN_SEGMENT,
            seed: 0,
        }
    }
}

/// A change point: the series changes *before* `index` (the first point of the new segment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    pub index: usize,
    /// Permutation p-value.
    pub p: f64,
    /// The statistic Q̂ at the split.
    pub q: f64,
}

/// The series cannot be searched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("value {index} is {value}: change points need finite numbers")]
    NotFinite { index: usize, value: f64 },
    #[error("min_segment {0}: at least 2 points per segment are needed")]
    MinSegment(usize),
}

/// The shortest series in which a step of `min_segment` points at its end can be significant:
/// a perfect separation of the newest `k` points is reached by 2 of the C(n, k) ways to place
/// them (at either end), so its p-value is about 2/C(n, k); this is the smallest n where that
/// is at most α/2 (half, so that the permutation estimate's own noise does not decide).
pub fn min_judgeable_len(params: &Params) -> usize {
    let k = params.min_segment.max(2);
    let mut n = 2 * k;
    loop {
        if 2.0 / binomial(n, k) <= params.alpha / 2.0 || n > 10_000 {
            return n;
        }
        n += 1;
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Counts and sums of the values inserted so far, by rank (a Fenwick tree).
struct Fenwick {
    count: Vec<f64>,
    sum: Vec<f64>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Fenwick {
            count: vec![0.0; n + 1],
            sum: vec![0.0; n + 1],
        }
    }
    fn add(&mut self, rank: usize, v: f64) {
        let mut i = rank + 1;
        while i < self.count.len() {
            self.count[i] += 1.0;
            self.sum[i] += v;
            i += i & i.wrapping_neg();
        }
    }
    /// (count, sum) of ranks ≤ `rank`.
    fn prefix(&self, rank: usize) -> (f64, f64) {
        let (mut c, mut s) = (0.0, 0.0);
        let mut i = rank + 1;
        while i > 0 {
            c += self.count[i];
            s += self.sum[i];
            i -= i & i.wrapping_neg();
        }
        (c, s)
    }
}

/// Σ over earlier points of |z[t] − z[i]|, for every t (values with their ranks among the
/// segment's distinct values; `ranks` < `distinct`).
fn distances_to_earlier(z: &[f64], ranks: &[usize], distinct: usize) -> Vec<f64> {
    let mut f = Fenwick::new(distinct);
    let (mut total_c, mut total_s) = (0.0, 0.0);
    let mut out = Vec::with_capacity(z.len());
    for (&v, &r) in z.iter().zip(ranks) {
        let (c, s) = f.prefix(r);
        // Below or equal: v·c − s; above: (total_s − s) − v·(total_c − c).
        out.push((v * c - s) + ((total_s - s) - v * (total_c - c)));
        f.add(r, v);
        total_c += 1.0;
        total_s += v;
    }
    out
}

/// The best split of a segment: (τ, Q̂), τ relative to the segment; `None` when it is shorter
/// than two minimum segments.
fn best_split(z: &[f64], ranks: &[usize], distinct: usize, min: usize) -> Option<(usize, f64)> {
    let l = z.len();
    if l < 2 * min {
        return None;
    }
    let earlier = distances_to_earlier(z, ranks, distinct);
    let rz: Vec<f64> = z.iter().rev().copied().collect();
    let rr: Vec<usize> = ranks.iter().rev().copied().collect();
    let mut later = distances_to_earlier(&rz, &rr, distinct);
    later.reverse();
    let total: f64 = earlier.iter().sum();
    // within_left(τ) = Σ_{t<τ} earlier[t]; within_right(τ) = Σ_{t≥τ} later[t].
    let mut within_left = 0.0;
    let mut within_right: f64 = later.iter().sum();
    let mut best: Option<(usize, f64)> = None;
    for tau in 1..l {
        within_left += earlier[tau - 1];
        within_right -= later[tau - 1];
        if tau < min || l - tau < min {
            continue;
        }
        let (n, m) = (tau as f64, (l - tau) as f64);
        let between = total - within_left - within_right;
        let e = 2.0 * between / (n * m)
            - within_left / (n * (n - 1.0) / 2.0)
            - within_right / (m * (m - 1.0) / 2.0);
        let q = n * m / (n + m) * e;
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((tau, q));
        }
    }
    best
}

/// Ranks of the values among their distinct values, and how many distinct values there are.
fn ranks_of(z: &[f64]) -> (Vec<usize>, usize) {
    let mut sorted = z.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let ranks = z
        .iter()
        .map(|v| sorted.partition_point(|s| s.total_cmp(v).is_lt()))
        .collect();
    (ranks, sorted.len())
}

/// A uniform index below `n` (Lemire's multiply-shift; the bias is below 2⁻⁵⁰ for any series).
fn below(rng: &mut Xoshiro256PlusPlus, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// The change points of `xs`, in index order. Refuses non-finite values (naming the first).
/// A series shorter than two minimum segments, or without variation, has none.
pub fn change_points(xs: &[f64], params: &Params) -> Result<Vec<ChangePoint>, InputError> {
    if let Some((index, &value)) = xs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(InputError::NotFinite { index, value });
    }
    if params.min_segment < 2 {
        return Err(InputError::MinSegment(params.min_segment));
    }
    let min = params.min_segment;
    let mut found: Vec<ChangePoint> = Vec::new();
    if xs.len() < 2 * min || xs.iter().all(|v| *v == xs[0]) {
        return Ok(found);
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
    // Boundaries of the current segments: [0, …, len].
    let mut bounds = vec![0, xs.len()];
    let rounds = params.permutations.max(1);
    // The largest number of rounds reaching Q̂ that still gives p ≤ α.
    let allowed = (params.alpha * (rounds + 1) as f64 - 1.0).floor();
    loop {
        let segments: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        let ranked: Vec<(Vec<usize>, usize)> =
            segments.iter().map(|&(a, b)| ranks_of(&xs[a..b])).collect();
        let mut candidate: Option<(usize, f64)> = None;
        for (&(a, b), (ranks, distinct)) in segments.iter().zip(&ranked) {
            if let Some((tau, q)) = best_split(&xs[a..b], ranks, *distinct, min)
                && candidate.is_none_or(|(_, c)| q > c)
            {
                candidate = Some((a + tau, q));
            }
        }
        let Some((index, q)) = candidate else { break };
        if q <= 0.0 {
            break;
        }
        // A permuted round that reaches the observed statistic (up to rounding) counts.
        let reach = q * (1.0 - 1e-9);
        let mut hits = 0usize;
        let mut done = 0usize;
        let mut buf_z = Vec::new();
        let mut buf_r = Vec::new();
        for _ in 0..rounds {
            let mut top = f64::NEG_INFINITY;
            for (&(a, b), (ranks, distinct)) in segments.iter().zip(&ranked) {
                if b - a < 2 * min {
                    continue;
                }
                buf_z.clear();
                buf_z.extend_from_slice(&xs[a..b]);
                buf_r.clear();
                buf_r.extend_from_slice(ranks);
                for i in (1..buf_z.len()).rev() {
                    let j = below(&mut rng, i + 1);
                    buf_z.swap(i, j);
                    buf_r.swap(i, j);
                }
                if let Some((_, pq)) = best_split(&buf_z, &buf_r, *distinct, min) {
                    top = top.max(pq);
                }
            }
            done += 1;
            if top >= reach {
                hits += 1;
                if hits as f64 > allowed {
                    break;
                }
            }
        }
        if hits as f64 > allowed {
            break;
        }
        let p = (1 + hits) as f64 / (1 + done) as f64;
        found.push(ChangePoint { index, p, q });
        let at = bounds.partition_point(|b| *b < index);
        bounds.insert(at, index);
    }
    found.sort_by_key(|c| c.index);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gauss(rng: &mut Xoshiro256PlusPlus) -> f64 {
        let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// `n` points of N(0, sigma), plus `step` from index `at` on.
    fn series(n: usize, sigma: f64, at: usize, step: f64, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|i| sigma * gauss(&mut rng) + if i >= at { step } else { 0.0 })
            .collect()
    }

    fn params(seed: u64) -> Params {
        Params {
            seed,
            ..Params::default()
        }
    }

    /// The O(L log L) statistic against the formula written out pairwise.
    #[test]
    fn the_fast_statistic_equals_the_pairwise_formula() {
        let z = series(17, 1.0, 9, 2.0, 7);
        let (ranks, distinct) = ranks_of(&z);
        let naive = |tau: usize| {
            let (x, y) = z.split_at(tau);
            let (n, m) = (x.len() as f64, y.len() as f64);
            let mut b = 0.0;
            for a in x {
                for c in y {
                    b += (a - c).abs();
                }
            }
            let within = |s: &[f64]| {
                let mut w = 0.0;
                for i in 0..s.len() {
                    for k in i + 1..s.len() {
                        w += (s[i] - s[k]).abs();
                    }
                }
                w
            };
            let e = 2.0 * b / (n * m)
                - within(x) / (n * (n - 1.0) / 2.0)
                - within(y) / (m * (m - 1.0) / 2.0);
            n * m / (n + m) * e
        };
        let (tau, q) = best_split(&z, &ranks, distinct, 3).unwrap();
        let (best_tau, best_q) = (3..=14)
            .map(|t| (t, naive(t)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(tau, best_tau);
        assert!(
            (q - best_q).abs() < 1e-9 * best_q.abs().max(1.0),
            "{q} {best_q}"
        );
    }

    #[test]
    fn a_step_at_a_known_night_is_found_there() {
        // 30 nights, 1 % noise, a 10 % drop from night 18 on (in log terms).
        let z = series(30, 0.01, 18, -0.105, 3);
        let cps = change_points(&z, &params(1)).unwrap();
        assert_eq!(cps.len(), 1, "{cps:?}");
        assert!(cps[0].index.abs_diff(18) <= 1, "{cps:?}");
        assert!(cps[0].p <= ALPHA);
    }

    #[test]
    fn two_steps_are_both_found() {
        let mut z = series(45, 0.01, 15, 0.2, 11);
        for v in &mut z[30..] {
            *v -= 0.4;
        }
        let cps = change_points(&z, &params(2)).unwrap();
        let at: Vec<usize> = cps.iter().map(|c| c.index).collect();
        assert_eq!(at.len(), 2, "{cps:?}");
        assert!(at[0].abs_diff(15) <= 1 && at[1].abs_diff(30) <= 1, "{at:?}");
    }

    /// A step of the minimum segment's length at the newest end, in the shortest judgeable
    /// history, is found: the history length the CLI asks for is enough.
    #[test]
    fn a_step_of_the_minimum_length_at_the_end_of_the_shortest_judged_history_is_found() {
        let p = params(5);
        let n = min_judgeable_len(&p);
        assert_eq!(n, 11);
        let z = series(n, 0.01, n - MIN_SEGMENT, -0.3, 9);
        let cps = change_points(&z, &p).unwrap();
        assert_eq!(cps.iter().map(|c| c.index).collect::<Vec<_>>(), [n - 5]);
    }

    /// False alarms: 500 series of pure noise (30 nights), at most 5 % with a change point
    /// (α = 0.01 per step: about 1 % expected).
    #[test]
    fn pure_noise_rarely_has_a_change_point() {
        let trials = 500;
        let alarms = (0..trials)
            .filter(|&s| {
                let z = series(30, 0.03, 0, 0.0, 1000 + s);
                !change_points(&z, &params(s)).unwrap().is_empty()
            })
            .count();
        assert!(alarms * 20 <= trials as usize, "{alarms} of {trials}");
    }

    #[test]
    fn a_constant_series_has_no_change_point() {
        assert!(change_points(&[4.2; 40], &params(1)).unwrap().is_empty());
    }

    #[test]
    fn a_series_shorter_than_two_segments_has_no_change_point() {
        let p = params(1);
        assert!(change_points(&[], &p).unwrap().is_empty());
        assert!(change_points(&[1.0], &p).unwrap().is_empty());
        let short = [1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0];
        assert!(change_points(&short, &p).unwrap().is_empty());
    }

    #[test]
    fn nan_and_infinity_are_refused_with_their_index() {
        let p = params(1);
        let e = change_points(&[1.0, 2.0, f64::NAN], &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "value 2 is NaN: change points need finite numbers"
        );
        assert!(matches!(
            change_points(&[f64::INFINITY, 1.0], &p),
            Err(InputError::NotFinite { index: 0, .. })
        ));
        let bad = Params {
            min_segment: 1,
            ..p
        };
        assert_eq!(
            change_points(&[1.0; 10], &bad),
            Err(InputError::MinSegment(1))
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let z = series(40, 0.02, 22, 0.05, 4);
        let a = change_points(&z, &params(77)).unwrap();
        let b = change_points(&z, &params(77)).unwrap();
        assert_eq!(a, b);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any clear step (8 σ), anywhere a segment can be, is found within one night.
        #[test]
        fn a_clear_step_anywhere_is_found_within_one_night(
            n in 20usize..60,
            frac in 0.0f64..1.0,
            up in any::<bool>(),
            seed in 0u64..1_000_000,
        ) {
            let at = MIN_SEGMENT + ((n - 2 * MIN_SEGMENT) as f64 * frac) as usize;
            let step = if up { 0.08 } else { -0.08 };
            let z = series(n, 0.01, at, step, seed);
            let cps = change_points(&z, &params(seed)).unwrap();
            prop_assert!(cps.iter().any(|c| c.index.abs_diff(at) <= 1), "{at} {cps:?}");
            prop_assert!(cps.len() <= 2, "{cps:?}");
        }

        /// Shifting or scaling the series (a log figure in other units) changes nothing.
        #[test]
        fn change_points_do_not_depend_on_the_unit(seed in 0u64..1_000_000, shift in -5.0f64..5.0) {
            let z = series(30, 0.02, 14, 0.1, seed);
            let moved: Vec<f64> = z.iter().map(|v| v + shift).collect();
            let a: Vec<usize> = change_points(&z, &params(seed)).unwrap().iter().map(|c| c.index).collect();
            let b: Vec<usize> = change_points(&moved, &params(seed)).unwrap().iter().map(|c| c.index).collect();
            prop_assert_eq!(a, b);
        }
    }
}
