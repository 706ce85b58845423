//! Global gradient-norm clipping.

use crate::parallel::sum_f64;
use crate::Real;
use rayon::prelude::*;

/// The L2 norm of all gradients together (accumulated in f64, reproducibly).
pub fn global_norm<T: Real>(grads: &[T]) -> f64 {
    sum_f64(grads.len(), |i| {
        let g = grads[i].to_f64();
        g * g
    })
    .sqrt()
}

/// Scales `grads` so that their global norm is at most `max_norm`, as PyTorch's
/// `clip_grad_norm_` does (coefficient `max_norm / (norm + 1e-6)`, capped at 1). Returns the
/// norm before clipping.
pub fn clip_global_norm<T: Real>(grads: &mut [T], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let c = T::from_f64(coef);
        grads.par_iter_mut().for_each(|g| *g = *g * c);
    }
    norm
}
