//! The gated MLP's activation, `h = act(g) ⊙ u`: SwiGLU (`act = silu`, Llama, Qwen) or GeGLU
//! with the tanh approximation of GELU (Gemma).
//!
//! Both reduce to a sigmoid, so both go through the vectorized exp: `silu(g) = g · σ(g)`, and
//! `gelu_tanh(g) = ½g(1 + tanh(z)) = g · σ(2z)` with `z = √(2/π)·(g + 0.044715·g³)`.

use crate::Real;
use rayon::prelude::*;

/// Which activation gates the MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `silu(g) = g · σ(g)` (SwiGLU).
    Silu,
    /// `gelu_tanh(g) = ½g(1 + tanh(√(2/π)(g + 0.044715 g³)))` (GeGLU; PyTorch's
    /// `gelu(approximate="tanh")`, transformers' `gelu_pytorch_tanh`).
    GeluTanh,
}

const CHUNK: usize = 4096;
const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_A: f64 = 0.044_715;

impl Gate {
    /// The sigmoid's argument for `g`, and its derivative w.r.t. `g`.
    fn arg<T: Real>(self, g: T) -> (T, T) {
        match self {
            Gate::Silu => (g, T::one()),
            Gate::GeluTanh => {
                let (c, a, two) = (T::from_f64(GELU_C), T::from_f64(GELU_A), T::from_f64(2.0));
                (two * c * (g + a * g * g * g), two * c * (T::one() + T::from_f64(3.0 * GELU_A) * g * g))
            }
        }
    }

    /// `σ(arg(g))` of a chunk, through the vectorized exp.
    fn sigmoids<T: Real>(self, g: &[T], s: &mut [T; CHUNK]) {
        let s = &mut s[..g.len()];
        s.iter_mut().zip(g).for_each(|(s, &g)| *s = -self.arg(g).0);
        T::exp_in_place(s);
        s.iter_mut().for_each(|s| *s = T::one() / (T::one() + *s));
    }
}

/// `h = act(g) ⊙ u` element-wise, where `act(g) = g · σ(arg(g))`.
pub fn glu_forward<T: Real>(gate: Gate, h: &mut [T], g: &[T], u: &[T]) {
    h.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(u.par_chunks(CHUNK)).for_each(|((h, g), u)| {
        let mut s = [T::zero(); CHUNK];
        gate.sigmoids(g, &mut s);
        for (((h, &g), &u), &s) in h.iter_mut().zip(g).zip(u).zip(&s) {
            *h = g * s * u;
        }
    });
}

/// `dg = dh ⊙ u ⊙ act'(g)`, `du = dh ⊙ act(g)`, with
/// `act'(g) = s + g · s(1 − s) · arg'(g)`, `s = σ(arg(g))`.
pub fn glu_backward<T: Real>(gate: Gate, dg: &mut [T], du: &mut [T], dh: &[T], g: &[T], u: &[T]) {
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(dh.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(((dg, du), dh), (g, u))| {
            let mut sig = [T::zero(); CHUNK];
            gate.sigmoids(g, &mut sig);
            for i in 0..dg.len() {
                let (s, slope) = (sig[i], gate.arg(g[i]).1);
                du[i] = dh[i] * g[i] * s;
                dg[i] = dh[i] * u[i] * (s + g[i] * s * (T::one() - s) * slope);
            }
        });
}
