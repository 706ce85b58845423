//! Training objectives. Every objective is a choice of per-token coefficients `cᵢ` in
//! `L = Σᵢ cᵢ ℓᵢ` over the supervised tokens of one optimizer batch, computed from detached
//! losses (so the gradient flows only through `ℓᵢ`).

pub mod flow;
pub mod talr;

use serde::{Deserialize, Serialize};
use talr::{talr_coefficients, CoefficientStats, Normalization, TalrConfig, Temperature};

/// The objectives by name, as a run config's `train.objective` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// Mean cross-entropy (plain SFT).
    Ce,
    /// Token-Adaptive Loss Reweighting, with the `[talr]` settings.
    Talr,
    /// Dynamic Fine-Tuning.
    Dft,
    /// FLOW's static per-example coefficients.
    Flow,
}

/// An objective with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Mean cross-entropy over supervised tokens.
    Ce,
    /// Token-Adaptive Loss Reweighting.
    Talr(TalrConfig),
    /// Dynamic Fine-Tuning: `(1/n) Σ sg(pᵢ) ℓᵢ` (TALR raw with τ = 1 and no floor).
    Dft,
    /// FLOW: static per-example coefficients from the initial model (see [`flow`]).
    Flow,
}

impl Objective {
    /// Whether the coefficients of a token depend on the other tokens of the optimizer batch
    /// (so gradient accumulation needs every micro-batch's losses first).
    pub fn batch_wide(&self) -> bool {
        matches!(self, Objective::Talr(_))
    }

    /// The objective's name in a run config (`ce`, `talr`, `dft`, `flow`), as logged.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Ce => "ce",
            Objective::Talr(_) => "talr",
            Objective::Dft => "dft",
            Objective::Flow => "flow",
        }
    }
}

/// The coefficients `cᵢ` for the supervised tokens of one optimizer batch.
/// `sequence[i]` identifies token `i`'s sequence (for TALR's τ); `sample_weight[i]` is the FLOW
/// weight of its example (ignored by the other objectives).
pub fn token_coefficients(
    objective: &Objective,
    losses: &[f64],
    sequence: &[usize],
    sample_weight: &[f64],
) -> (Vec<f64>, Option<CoefficientStats>) {
    let n = losses.len().max(1) as f64;
    match objective {
        Objective::Ce => (vec![1.0 / n; losses.len()], None),
        Objective::Flow => (sample_weight.iter().map(|w| w / n).collect(), None),
        Objective::Talr(cfg) => {
            let (w, stats) = talr_coefficients(losses, sequence, cfg);
            (w.iter().map(|w| w / n).collect(), Some(stats))
        }
        Objective::Dft => {
            let cfg =
                TalrConfig { normalization: Normalization::Raw, temperature: Temperature::Fixed(1.0), floor: 0.0 };
            let (w, stats) = talr_coefficients(losses, sequence, &cfg);
            (w.iter().map(|w| w / n).collect(), Some(stats))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dft_is_talr_raw_with_unit_temperature_and_no_floor() {
        let losses = [0.05, 0.7, 3.0, 1.2];
        let seq = [0, 0, 1, 1];
        let (dft, _) = token_coefficients(&Objective::Dft, &losses, &seq, &[1.0; 4]);
        let talr = Objective::Talr(TalrConfig {
            normalization: Normalization::Raw,
            temperature: Temperature::Fixed(1.0),
            floor: 0.0,
        });
        let (t, _) = token_coefficients(&talr, &losses, &seq, &[1.0; 4]);
        assert_eq!(dft, t);
        for (c, l) in dft.iter().zip(losses) {
            assert!((c - (-l).exp() / 4.0).abs() < 1e-15, "DFT coefficient is p/n");
        }
    }

    #[test]
    fn ce_and_flow_coefficients() {
        let (ce, stats) = token_coefficients(&Objective::Ce, &[1.0, 2.0], &[0, 0], &[0.5, 0.5]);
        assert_eq!((ce, stats), (vec![0.5, 0.5], None));
        let (flow, _) = token_coefficients(&Objective::Flow, &[1.0, 2.0], &[0, 1], &[0.8, 0.2]);
        assert_eq!(flow, vec![0.4, 0.1]);
    }
}
