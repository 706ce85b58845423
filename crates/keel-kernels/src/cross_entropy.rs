//! Softmax cross-entropy over the vocabulary with a coefficient per token.
//!
//! The forward gives each token's loss `ℓ = lse(z) − z[target]`; the objective (CE, TALR, DFT,
//! FLOW) then chooses per-token coefficients from those losses, and the backward forms
//! `∂(Σ cᵢ ℓᵢ)/∂z = c · (softmax(z) − onehot(target))` in place of the logits.

use crate::Real;
use rayon::prelude::*;

/// Target id of a position that carries no loss.
pub const IGNORE: u32 = u32::MAX;

/// For each row of `logits` (`[N × vocab]`): `lse[n]` and `losses[n]` (0 where ignored).
pub fn cross_entropy_forward<T: Real>(losses: &mut [T], lse: &mut [T], logits: &[T], targets: &[u32]) {
    let vocab = logits.len() / targets.len();
    losses.par_iter_mut().zip(lse.par_iter_mut()).zip(logits.par_chunks(vocab)).zip(targets.par_iter()).for_each(
        |(((loss, lse), z), &target)| {
            if target == IGNORE {
                *loss = T::zero();
                *lse = T::zero();
                return;
            }
            assert!((target as usize) < vocab, "target id {target} outside the vocabulary ({vocab})");
            *lse = log_sum_exp(z);
            *loss = *lse - z[target as usize];
        },
    );
}

fn log_sum_exp<T: Real>(z: &[T]) -> T {
    const CHUNK: usize = 4096;
    let max = z.iter().copied().fold(T::neg_infinity(), T::max);
    let mut buf = [T::zero(); CHUNK];
    let mut sum = 0.0f64;
    for zc in z.chunks(CHUNK) {
        let e = &mut buf[..zc.len()];
        e.iter_mut().zip(zc).for_each(|(e, &x)| *e = x - max);
        T::exp_in_place(e);
        sum += e.iter().map(|&x| Real::to_f64(x)).sum::<f64>();
    }
    max + T::from_f64(sum.ln())
}

/// Overwrites `logits` with `∂(Σ cᵢ ℓᵢ)/∂logits` for the per-row `coefficients` cᵢ; rows with a
/// zero coefficient become zero.
pub fn cross_entropy_backward<T: Real>(logits: &mut [T], lse: &[T], targets: &[u32], coefficients: &[T]) {
    let vocab = logits.len() / targets.len();
    logits.par_chunks_mut(vocab).zip(lse.par_iter()).zip(targets.par_iter()).zip(coefficients.par_iter()).for_each(
        |(((z, &lse), &target), &w)| {
            if w == T::zero() {
                z.iter_mut().for_each(|x| *x = T::zero());
                return;
            }
            assert!(target != IGNORE, "a nonzero coefficient on a position without a target");
            z.iter_mut().for_each(|x| *x = *x - lse);
            T::exp_in_place(z);
            z.iter_mut().for_each(|x| *x = w * *x);
            z[target as usize] = z[target as usize] - w;
        },
    );
}
