//! The paired bootstrap over items × seeds, with its own small seeded generator so that the
//! intervals are the same bytes on every machine and every run.

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 1000;

/// Base seed of every bootstrap stream; each interval mixes in a hash of what it measures, so
/// adding a cell to a sweep does not move the other cells' intervals.
pub const BOOTSTRAP_SEED: u64 = 0x6b65_656c_7265_706f;

/// SplitMix64: tiny, fast, and fully specified, so a seed gives the same draws everywhere.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift; the slight bias for huge n is
    /// irrelevant at item counts.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// FNV-1a of a string: a stable (unlike std's `DefaultHasher`, which may change) stream id.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// One task's paired verdicts: the base's and each seed's, per item, on the same items in the
/// same order. Each verdict is (passed, count); a task's score is Σ passed / Σ count.
pub(crate) struct PairedTask<'a> {
    pub base: &'a [(u32, u32)],
    pub seeds: Vec<&'a [(u32, u32)]>,
}

fn pooled_score(verdicts: &[(u32, u32)], items: &[usize]) -> f64 {
    let (passed, count) =
        items.iter().fold((0u64, 0u64), |(p, c), &i| (p + verdicts[i].0 as u64, c + verdicts[i].1 as u64));
    passed as f64 / count.max(1) as f64
}

/// 95% percentile interval of the mean over `tasks` of (mean over seeds of the seed's score −
/// the base's score). Each resample draws the seeds with replacement, then each task's items
/// with replacement; the base and every seed are scored on the same drawn items (paired).
/// All tasks must have the same number of seeds (≥ 1) and items matching the base's (≥ 1).
pub(crate) fn paired_bootstrap(tasks: &[PairedTask], stream: u64) -> (f64, f64) {
    let seeds = tasks.first().map_or(0, |t| t.seeds.len());
    debug_assert!(tasks.iter().all(|t| t.seeds.len() == seeds && t.seeds.iter().all(|s| s.len() == t.base.len())));
    let mut rng = SplitMix64::new(BOOTSTRAP_SEED ^ stream);
    let mut stats = Vec::with_capacity(RESAMPLES);
    let mut items = Vec::new();
    let mut drawn_seeds = Vec::with_capacity(seeds);
    for _ in 0..RESAMPLES {
        drawn_seeds.clear();
        drawn_seeds.extend((0..seeds).map(|_| rng.below(seeds)));
        let mut sum_of_deltas = 0.0;
        for task in tasks {
            items.clear();
            items.extend((0..task.base.len()).map(|_| rng.below(task.base.len())));
            let base = pooled_score(task.base, &items);
            let seed_mean =
                drawn_seeds.iter().map(|&s| pooled_score(task.seeds[s], &items)).sum::<f64>() / seeds as f64;
            sum_of_deltas += seed_mean - base;
        }
        stats.push(sum_of_deltas / tasks.len() as f64);
    }
    percentile_interval(stats)
}

/// The 2.5th and 97.5th percentiles of `values` (non-empty).
fn percentile_interval(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let lo = (n as f64 * 0.025).floor() as usize;
    let hi = ((n as f64 * 0.975).ceil() as usize).saturating_sub(1);
    (values[lo.min(n - 1)], values[hi.min(n - 1)])
}

/// Mean of a non-empty slice.
pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_models_have_a_zero_interval() {
        let v = [(1, 1), (0, 1), (1, 1), (1, 1)];
        let task = PairedTask { base: &v, seeds: vec![&v, &v] };
        assert_eq!(paired_bootstrap(&[task], 7), (0.0, 0.0));
    }

    #[test]
    fn the_interval_is_deterministic_and_brackets_a_clear_gain() {
        let base: Vec<(u32, u32)> = (0..60).map(|i| ((i % 3 == 0) as u32, 1)).collect();
        let better: Vec<(u32, u32)> = (0..60).map(|i| ((i % 3 != 2) as u32, 1)).collect();
        let task = || PairedTask { base: &base, seeds: vec![&better] };
        let (lo, hi) = paired_bootstrap(&[task()], 3);
        assert_eq!((lo, hi), paired_bootstrap(&[task()], 3));
        let point = 40.0 / 60.0 - 20.0 / 60.0;
        assert!(lo > 0.0 && lo <= point && point <= hi, "{lo} {point} {hi}");
    }

    #[test]
    fn pooled_scores_weigh_checks_not_items() {
        assert_eq!(pooled_score(&[(1, 1), (1, 3)], &[0, 1]), 0.5);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(1);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
