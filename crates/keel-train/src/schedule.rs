//! Learning-rate schedules, as transformers' `get_*_schedule_with_warmup` define them: the
//! multiplier for update `s` (0-based) rises linearly over the warm-up, then stays, falls
//! linearly, or follows half a cosine to 0 at the last update.

use serde::{Deserialize, Serialize};

/// Shape of the learning rate after the warm-up (a run config's `train.schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The peak rate until the end.
    Constant,
    /// Falls linearly from the peak to 0 at the last update.
    Linear,
    /// Half a cosine from the peak to 0 at the last update.
    Cosine,
}

/// Learning rate of update `step` out of `total`.
pub fn learning_rate(schedule: Schedule, peak: f64, step: u64, total: u64, warmup: u64) -> f64 {
    let (s, total, warmup) = (step as f64, total.max(1) as f64, warmup as f64);
    if s < warmup {
        return peak * s / warmup.max(1.0);
    }
    let progress = ((s - warmup) / (total - warmup).max(1.0)).min(1.0);
    peak * match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => ((total - s) / (total - warmup).max(1.0)).max(0.0),
        Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let lr = |s, sch| learning_rate(sch, 1.0, s, 10, 2);
        assert_eq!([lr(0, Schedule::Linear), lr(1, Schedule::Linear), lr(2, Schedule::Linear)], [0.0, 0.5, 1.0]);
        assert_eq!(lr(6, Schedule::Linear), 0.5);
        assert_eq!(lr(5, Schedule::Constant), 1.0);
        assert!((lr(6, Schedule::Cosine) - 0.5).abs() < 1e-12);
        assert!(lr(9, Schedule::Cosine) < 0.05);
        assert_eq!(learning_rate(Schedule::Constant, 3e-6, 0, 10, 0), 3e-6);
    }
}
