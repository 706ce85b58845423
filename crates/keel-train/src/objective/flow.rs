//! FLOW (Sanyal et al., 2025): static per-example weights from the initial model.
//!
//! Before training, each example's mean response-token loss ℓ̄ₖ under θ₀ is measured;
//! τ = median over the training set; wₖ = exp(−ℓ̄ₖ/τ) (not renormalized).

use super::talr::{median, TAU_MIN};

/// Weights from the examples' mean losses under the initial model; returns (weights, τ).
pub fn flow_weights(mean_losses: &[f64]) -> (Vec<f64>, f64) {
    if mean_losses.is_empty() {
        return (Vec::new(), TAU_MIN);
    }
    let tau = median(mean_losses).max(TAU_MIN);
    (mean_losses.iter().map(|l| (-l / tau).exp()).collect(), tau)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_exp_of_minus_loss_over_the_median() {
        let losses = [0.2, 1.0, 0.6, 3.0];
        let (w, tau) = flow_weights(&losses);
        assert_eq!(tau, 0.8); // median of [0.2, 0.6, 1.0, 3.0]
        for (wi, l) in w.iter().zip(losses) {
            assert_eq!(*wi, (-l / 0.8f64).exp());
        }
        assert!(w[0] > w[3], "easy examples weigh more");
    }
}
