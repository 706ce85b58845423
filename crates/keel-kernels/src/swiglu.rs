//! SwiGLU gate: `h = silu(g) ⊙ u`.

use crate::Real;
use rayon::prelude::*;

const CHUNK: usize = 4096;

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

pub fn swiglu_forward<T: Real>(h: &mut [T], g: &[T], u: &[T]) {
    h.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((h, g), u)| {
        for ((h, &g), &u) in h.iter_mut().zip(g).zip(u) {
            *h = g * sigmoid(g) * u;
        }
    });
}

/// `dg = dh ⊙ u ⊙ silu'(g)`, `du = dh ⊙ silu(g)`; silu'(g) = s·(1 + g·(1 − s)), s = sigmoid(g).
pub fn swiglu_backward<T: Real>(dg: &mut [T], du: &mut [T], dh: &[T], g: &[T], u: &[T]) {
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(dh.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(((dg, du), dh), (g, u))| {
            for i in 0..dg.len() {
                let s = sigmoid(g[i]);
                du[i] = dh[i] * g[i] * s;
                dg[i] = dh[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
}
