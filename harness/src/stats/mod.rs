//! The statistics behind the regression gate (issue 12), with no dependency beyond a PRNG:
//!
//! - [`mann_whitney`]: the one-sided Mann–Whitney U test; exact p-values (the permutation
//!   distribution of the rank sum, ties included) for small samples, the normal approximation
//!   with tie and continuity correction beyond;
//! - [`holm`]: Holm's step-down adjustment for the many comparisons of one run;
//! - [`bootstrap`]: a seeded percentile bootstrap of the ratio of medians (Xoshiro256++, so
//!   the same inputs always give the same interval);
//! - [`summary`]: median, coefficient of variation and its robust counterpart;
//! - [`edivisive`]: change points in a nightly series (E-Divisive means with a seeded
//!   permutation test), for `pvcheck history`.
//!
//! Why these: with a handful of repetitions nothing is known about the distribution of a
//! storage figure (bimodal caches, long tails), so the test is rank-based, and the size of the
//! change is judged by an interval rather than a point estimate (criterion.rs's rule: a
//! regression only when the whole interval lies beyond the noise threshold).

pub mod bootstrap;
pub mod edivisive;
pub mod holm;
pub mod mann_whitney;
pub mod normal;
pub mod summary;

pub use bootstrap::{RatioInterval, median_interval, ratio_of_medians};
pub use holm::holm_adjust;
pub use mann_whitney::{Alternative, MannWhitney, mann_whitney};
pub use summary::{cv, median, robust_spread};
