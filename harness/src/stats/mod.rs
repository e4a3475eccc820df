//! The statistics behind the regression gate (issues 12 and 19), with no dependency beyond a
//! PRNG:
//!
//! - [`shift`]: the Hodges–Lehmann shift between two samples with exact, distribution-free
//!   bounds (the Mann–Whitney inversion): the gate's interval, on log values;
//! - [`bootstrap`]: a seeded percentile bootstrap of a median and of a ratio of medians
//!   (Xoshiro256++, so the same inputs always give the same interval; the HTML charts' whiskers);
//! - [`summary`]: median, coefficient of variation and its robust counterpart;
//! - [`edivisive`]: change points in a nightly series (E-Divisive means with a seeded
//!   permutation test), for `pvcheck history`.
//!
//! Why these: with a handful of repetitions nothing is known about the distribution of a
//! storage figure (bimodal caches, long tails), so the test is rank-based, and the size of the
//! change is judged by an interval rather than a point estimate (criterion.rs's rule: a
//! regression only when the whole interval lies beyond the noise threshold). No correction over
//! the run's many figures: a margin holds false alarms down (compare::gate).

pub mod bootstrap;
pub mod edivisive;
pub mod normal;
pub mod shift;
pub mod summary;

pub use bootstrap::{RatioInterval, median_interval, ratio_of_medians};
pub use shift::{Shift, shift};
pub use summary::{cv, median, robust_spread};
