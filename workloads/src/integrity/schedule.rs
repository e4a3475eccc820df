//! Which generation every block must hold: recomputed from the ledger's generations, so the
//! ledger never lists blocks. Generation g ≥ 2 rewrote block (file, offset) iff a keyed hash of
//! (g's seed, file, offset) falls below g's fraction of 2^64.

use super::ledger::Generation;
use super::prng;

/// The rewrite selection of the generations after the first, in a form cheap to query per block.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// (generation, seed, threshold); selected iff hash < threshold, or always when None.
    rewrites: Vec<(u64, u64, Option<u64>)>,
}

impl Schedule {
    pub fn new(generations: &[Generation]) -> Schedule {
        let rewrites = generations
            .iter()
            .skip(1)
            .map(|g| (g.generation, g.seed, threshold(g.fraction)))
            .collect();
        Schedule { rewrites }
    }

    /// True when generation `g` (≥ 2) rewrote the block.
    pub fn selected(seed: u64, fraction_threshold: Option<u64>, file_id: u64, offset: u64) -> bool {
        match fraction_threshold {
            None => true,
            Some(t) => prng::fold_key(&[seed, file_id, offset]) < t,
        }
    }

    /// The generation the block must hold now.
    pub fn expected(&self, file_id: u64, offset: u64) -> u64 {
        self.rewrites
            .iter()
            .rev()
            .find(|(_, s, t)| Self::selected(*s, *t, file_id, offset))
            .map_or(1, |(g, _, _)| *g)
    }

    /// Every generation the block has held, oldest first (always starts with 1).
    pub fn history(&self, file_id: u64, offset: u64) -> Vec<u64> {
        let mut h = vec![1];
        h.extend(
            self.rewrites
                .iter()
                .filter(|(_, s, t)| Self::selected(*s, *t, file_id, offset))
                .map(|(g, _, _)| *g),
        );
        h
    }
}

/// `fraction` of 2^64 as a threshold; None means every block (fraction 1.0).
pub fn threshold(fraction: f64) -> Option<u64> {
    if fraction >= 1.0 {
        None
    } else {
        Some((fraction * 18446744073709551616.0) as u64)
    }
}

/// The seed of generation `g` when the user gives none: derived from the dataset seed.
/// Below 2^53, so it survives a double-precision JSON reader when copied back to `--seed`.
pub fn generation_seed(dataset_seed: u64, g: u64) -> u64 {
    prng::fold_key(&[dataset_seed, 0x4745_4E45_5241_5449, g]) & crate::units::JSON_SAFE_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_selects_about_that_share_and_latest_wins() {
        let gens = vec![
            Generation {
                generation: 1,
                seed: 5,
                fraction: 1.0,
            },
            Generation {
                generation: 2,
                seed: 6,
                fraction: 0.25,
            },
            Generation {
                generation: 3,
                seed: 7,
                fraction: 0.25,
            },
        ];
        let s = Schedule::new(&gens);
        let n = 20_000u64;
        let mut g2 = 0;
        let mut g3 = 0;
        for b in 0..n {
            let h = s.history(0, b * 4096);
            match s.expected(0, b * 4096) {
                3 => g3 += 1,
                2 => g2 += 1,
                _ => {}
            }
            assert_eq!(*h.last().unwrap(), s.expected(0, b * 4096));
        }
        assert!((g3 as f64 / n as f64 - 0.25).abs() < 0.02, "{g3}");
        // generation 2 survives where 3 did not rewrite: 0.25 * 0.75
        assert!((g2 as f64 / n as f64 - 0.1875).abs() < 0.02, "{g2}");
    }
}
