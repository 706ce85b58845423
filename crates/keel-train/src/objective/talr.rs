//! Token-Adaptive Loss Reweighting (TALR), as `docs/method.md` describes it.
//!
//! The per-token coefficients solve `min_w Σ wᵢℓᵢ + τ Σ wᵢ log wᵢ` over the simplex: `wᵢ = softmax(−ℓ/τ)ᵢ`,
//! computed from detached losses. τ adapts each step (median over sequences of the mean token
//! loss), a floor keeps hard tokens from vanishing, and two normalizations are offered.

use serde::{Deserialize, Serialize};

/// How TALR's softmax coefficients are scaled before use.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Coefficients scaled to mean 1 over the batch's supervised tokens, floored, renormalized: the
    /// loss keeps CE's scale and TALR only redistributes gradient.
    Simplex,
    /// `wᵢ = max(pᵢ^(1/τ), floor)` without normalization (≤ 1: also shrinks the step).
    Raw,
}

/// TALR's τ. In a run config: `"sequence_median"`, `"token_median"` or a positive number.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub enum Temperature {
    /// Median over sequences of each sequence's mean token loss (the paper's default).
    SequenceMedian,
    /// Median of the token losses.
    TokenMedian,
    /// A fixed τ (the paper's ablation).
    Fixed(f64),
}

impl TryFrom<serde_json::Value> for Temperature {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match &v {
            serde_json::Value::String(s) if s == "sequence_median" => Ok(Temperature::SequenceMedian),
            serde_json::Value::String(s) if s == "token_median" => Ok(Temperature::TokenMedian),
            serde_json::Value::Number(n) if n.as_f64().is_some_and(|t| t > 0.0 && t.is_finite()) => {
                Ok(Temperature::Fixed(n.as_f64().unwrap_or_default()))
            }
            _ => Err(format!("expected \"sequence_median\", \"token_median\" or a positive number, got {v}")),
        }
    }
}

impl From<Temperature> for serde_json::Value {
    fn from(t: Temperature) -> Self {
        match t {
            Temperature::SequenceMedian => "sequence_median".into(),
            Temperature::TokenMedian => "token_median".into(),
            Temperature::Fixed(tau) => tau.into(),
        }
    }
}

/// TALR's settings, from a run config's `[talr]` section.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TalrConfig {
    /// How the coefficients are scaled.
    pub normalization: Normalization,
    /// How τ is chosen each step.
    pub temperature: Temperature,
    /// `w_min`; 0 disables the floor.
    pub floor: f64,
}

/// What a step's coefficients looked like (logged per step).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CoefficientStats {
    /// τ used for this step (a median is raised to [`TAU_MIN`] at least; a fixed τ is used as given).
    pub tau: f64,
    /// Mean coefficient over the supervised tokens (1 under [`Normalization::Simplex`]).
    pub mean: f64,
    /// Smallest coefficient; with `max`, the spread TALR puts on tokens (uniform CE would give 1 to all).
    pub min: f64,
    /// Largest coefficient.
    pub max: f64,
    /// Fraction of supervised tokens whose coefficient was raised to the floor.
    pub at_floor: f64,
}

/// τ lower bound, so that a batch of near-zero losses does not divide by zero.
pub const TAU_MIN: f64 = 1e-6;

/// Median with the mean of the two middle values for an even count (as numpy's).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// τ for a batch of supervised-token losses; `sequence[i]` names the sequence of token `i`.
pub fn temperature(losses: &[f64], sequence: &[usize], t: Temperature) -> f64 {
    let tau = match t {
        Temperature::Fixed(v) => return v,
        Temperature::TokenMedian => median(losses),
        Temperature::SequenceMedian => {
            let mut sums: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
            for (&l, &s) in losses.iter().zip(sequence) {
                let e = sums.entry(s).or_default();
                e.0 += l;
                e.1 += 1;
            }
            median(&sums.values().map(|&(sum, n)| sum / n as f64).collect::<Vec<_>>())
        }
    };
    tau.max(TAU_MIN)
}

/// TALR weights of the batch's supervised tokens. The loss is `(1/n) Σ wᵢ ℓᵢ` with these `wᵢ`
/// treated as constants.
pub fn talr_coefficients(losses: &[f64], sequence: &[usize], cfg: &TalrConfig) -> (Vec<f64>, CoefficientStats) {
    let n = losses.len();
    if n == 0 {
        return (Vec::new(), CoefficientStats::default());
    }
    let tau = temperature(losses, sequence, cfg.temperature);
    let mut floored = 0usize;
    let weights: Vec<f64> = match cfg.normalization {
        Normalization::Simplex => {
            // softmax(−ℓ/τ), stabilized by the smallest loss; then n·w, floor, renormalize.
            let lmin = losses.iter().copied().fold(f64::INFINITY, f64::min);
            let e: Vec<f64> = losses.iter().map(|&l| (-(l - lmin) / tau).exp()).collect();
            let z: f64 = e.iter().sum();
            let scaled: Vec<f64> = e
                .iter()
                .map(|&x| {
                    let w = n as f64 * x / z;
                    if w < cfg.floor {
                        floored += 1;
                        cfg.floor
                    } else {
                        w
                    }
                })
                .collect();
            let mean = scaled.iter().sum::<f64>() / n as f64;
            scaled.iter().map(|w| w / mean).collect()
        }
        Normalization::Raw => losses
            .iter()
            .map(|&l| {
                let w = (-l / tau).exp();
                if w < cfg.floor {
                    floored += 1;
                    cfg.floor
                } else {
                    w
                }
            })
            .collect(),
    };
    let stats = CoefficientStats {
        tau,
        mean: weights.iter().sum::<f64>() / n as f64,
        min: weights.iter().copied().fold(f64::INFINITY, f64::min),
        max: weights.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        at_floor: floored as f64 / n as f64,
    };
    (weights, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * b.abs().max(1.0)
    }

    /// Two sequences: A has losses [0.1, 0.3] (mean 0.2), B has [2.0] (mean 2.0) → τ = 1.1.
    const LOSSES: [f64; 3] = [0.1, 0.3, 2.0];
    const SEQ: [usize; 3] = [0, 0, 1];

    #[test]
    fn temperature_is_the_median_of_sequence_means_floored() {
        assert!(close(temperature(&LOSSES, &SEQ, Temperature::SequenceMedian), 1.1));
        assert!(close(temperature(&LOSSES, &SEQ, Temperature::TokenMedian), 0.3));
        assert_eq!(temperature(&[0.0, 0.0], &[0, 1], Temperature::SequenceMedian), TAU_MIN);
        assert_eq!(temperature(&LOSSES, &SEQ, Temperature::Fixed(0.7)), 0.7);
    }

    #[test]
    fn simplex_coefficients_match_the_hand_computation() {
        let cfg =
            TalrConfig { normalization: Normalization::Simplex, temperature: Temperature::SequenceMedian, floor: 0.0 };
        let (w, s) = talr_coefficients(&LOSSES, &SEQ, &cfg);
        // By hand: e = exp(−ℓ/1.1) = [0.913101, 0.761300, 0.162321]; Σ = 1.836722;
        // n·e/Σ = [1.491408, 1.243466, 0.265126].
        let e: Vec<f64> = LOSSES.iter().map(|l| (-l / 1.1f64).exp()).collect();
        let z: f64 = e.iter().sum();
        for (wi, ei) in w.iter().zip(&e) {
            assert!(close(*wi, 3.0 * ei / z));
        }
        assert!((w[0] - 1.491408).abs() < 1e-6 && (w[2] - 0.265126).abs() < 1e-6);
        assert!(close(s.mean, 1.0) && s.at_floor == 0.0 && close(s.tau, 1.1));
    }

    #[test]
    fn the_floor_raises_hard_tokens_then_renormalizes() {
        let cfg =
            TalrConfig { normalization: Normalization::Simplex, temperature: Temperature::SequenceMedian, floor: 0.5 };
        let (w, s) = talr_coefficients(&LOSSES, &SEQ, &cfg);
        // n·w = [1.491408, 1.243466, 0.265126] → [1.491408, 1.243466, 0.5], mean 1.078291,
        // renormalized [1.383122, 1.153182, 0.463697].
        assert!((w[0] - 1.383122).abs() < 1e-6 && (w[1] - 1.153182).abs() < 1e-6 && (w[2] - 0.463697).abs() < 1e-6);
        assert!(close(s.mean, 1.0) && close(s.at_floor, 1.0 / 3.0));
    }

    #[test]
    fn raw_weights_are_floored_powers_of_the_probability() {
        let cfg =
            TalrConfig { normalization: Normalization::Raw, temperature: Temperature::SequenceMedian, floor: 0.2 };
        let (w, s) = talr_coefficients(&LOSSES, &SEQ, &cfg);
        // p^(1/τ) = exp(−ℓ/1.1) = [0.913101, 0.761300, 0.162321 → floored to 0.2].
        assert!((w[0] - 0.913101).abs() < 1e-6 && (w[1] - 0.761300).abs() < 1e-6 && w[2] == 0.2);
        assert!(close(s.at_floor, 1.0 / 3.0) && close(s.max, w[0]) && s.min == 0.2);
    }

    #[test]
    fn adaptive_temperature_tracks_falling_losses() {
        let cfg =
            TalrConfig { normalization: Normalization::Simplex, temperature: Temperature::SequenceMedian, floor: 0.0 };
        let high = talr_coefficients(&[1.0, 3.0], &[0, 1], &cfg).1.tau;
        let low = talr_coefficients(&[0.1, 0.3], &[0, 1], &cfg).1.tau;
        assert!(close(high, 2.0) && close(low, 0.2));
    }
}
