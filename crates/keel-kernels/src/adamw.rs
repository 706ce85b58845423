//! AdamW with decoupled weight decay, updating parameters in place (PyTorch's formulation).

use crate::Real;
use rayon::prelude::*;

/// AdamW's hyperparameters for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWHyper {
    /// Learning rate of this step (the schedule's value).
    pub lr: f64,
    /// Decay rate of the first moment (mean of the gradients).
    pub beta1: f64,
    /// Decay rate of the second moment (mean of the squared gradients).
    pub beta2: f64,
    /// Added to the second moment's root so that tiny moments do not blow up the step.
    pub eps: f64,
    /// Decoupled weight decay: parameters shrink by `lr · weight_decay` each step.
    pub weight_decay: f64,
}

/// One AdamW step (`step` counts from 1) on one tensor:
/// `p ← p·(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
pub fn adamw_update<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamWHyper, step: u64) {
    let bc1 = 1.0 - h.beta1.powf(step as f64);
    let bc2 = 1.0 - h.beta2.powf(step as f64);
    let decay = T::from_f64(1.0 - h.lr * h.weight_decay);
    let step_size = T::from_f64(h.lr / bc1);
    let inv_sqrt_bc2 = T::from_f64(1.0 / bc2.sqrt());
    let (b1, b2, eps) = (T::from_f64(h.beta1), T::from_f64(h.beta2), T::from_f64(h.eps));
    let (one_b1, one_b2) = (T::from_f64(1.0 - h.beta1), T::from_f64(1.0 - h.beta2));
    const CHUNK: usize = 8192;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for i in 0..p.len() {
                p[i] = p[i] * decay;
                m[i] = b1 * m[i] + one_b1 * g[i];
                v[i] = b2 * v[i] + one_b2 * g[i] * g[i];
                p[i] = p[i] - step_size * m[i] / (v[i].sqrt() * inv_sqrt_bc2 + eps);
            }
        });
}
