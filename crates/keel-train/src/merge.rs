//! Model averaging (WiSE-FT): `θ_α = α·θ_ft + (1 − α)·θ₀` for every parameter.

use anyhow::{ensure, Result};
use keel_model::Transformer;
use rayon::prelude::*;

/// Averages `tuned` toward `base` in place of a copy of `base`. The convex form is exact at the
/// ends: α = 0 gives θ₀ bit for bit, α = 1 gives θ_ft.
pub fn average(base: &Transformer, tuned: &Transformer, alpha: f64) -> Result<Transformer> {
    ensure!(base.config == tuned.config, "the base and the tuned model have different architectures");
    ensure!((0.0..=1.0).contains(&alpha), "alpha must lie in [0, 1], got {alpha}");
    let (a, b) = (alpha as f32, (1.0 - alpha) as f32);
    let mut out = Transformer::zeros(base.config.clone());
    out.params
        .par_iter_mut()
        .zip(base.params.par_iter().zip(tuned.params.par_iter()))
        .for_each(|(o, (&p0, &p1))| *o = b * p0 + a * p1);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::ModelConfig;

    #[test]
    fn the_ends_are_exact_and_the_middle_is_the_mean() {
        let c = ModelConfig::from_hf_json(
            &serde_json::json!({"model_type": "llama", "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 24, "vocab_size": 30}),
        )
        .unwrap();
        let base = Transformer::init_random(c.clone(), 1, 0.3);
        let tuned = Transformer::init_random(c, 2, 0.3);
        assert!(average(&base, &tuned, 0.0).unwrap().params == base.params);
        assert!(average(&base, &tuned, 1.0).unwrap().params == tuned.params);
        let mid = average(&base, &tuned, 0.5).unwrap();
        for i in 0..mid.params.len() {
            assert!((mid.params[i] - 0.5 * (base.params[i] + tuned.params[i])).abs() < 1e-6);
        }
        assert!(average(&base, &tuned, 1.5).is_err());
    }
}
