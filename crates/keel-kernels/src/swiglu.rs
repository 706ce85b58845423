//! SwiGLU gate: `h = silu(g) ⊙ u`.

use crate::Real;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// `sigmoid(g)` of a chunk, through the vectorized exp.
fn sigmoids<T: Real>(g: &[T], s: &mut [T; CHUNK]) {
    let s = &mut s[..g.len()];
    s.iter_mut().zip(g).for_each(|(s, &g)| *s = -g);
    T::exp_in_place(s);
    s.iter_mut().for_each(|s| *s = T::one() / (T::one() + *s));
}

/// `h = silu(g) ⊙ u` element-wise (`silu(g) = g · sigmoid(g)`).
pub fn swiglu_forward<T: Real>(h: &mut [T], g: &[T], u: &[T]) {
    h.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((h, g), u)| {
        let mut s = [T::zero(); CHUNK];
        sigmoids(g, &mut s);
        for (((h, &g), &u), &s) in h.iter_mut().zip(g).zip(u).zip(&s) {
            *h = g * s * u;
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
            let mut sig = [T::zero(); CHUNK];
            sigmoids(g, &mut sig);
            for i in 0..dg.len() {
                let s = sig[i];
                du[i] = dh[i] * g[i] * s;
                dg[i] = dh[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
}
