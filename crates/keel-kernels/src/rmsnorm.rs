//! RMSNorm, as Hugging Face computes it: `y = (offset + w) ⊙ x / sqrt(mean(x²) + eps)`.
//!
//! `offset` is 0 for Llama-style gains and 1 for Gemma's, which store `w` with the gain `1 + w`
//! (so that a zero-initialized weight is the identity).

use crate::parallel::accumulate_rows;
use crate::Real;
use rayon::prelude::*;

/// Normalizes each row of `x` (`[rows × dim]`) into `out`, keeping `1/rms` per row in `rstd`.
pub fn rmsnorm_forward<T: Real>(out: &mut [T], rstd: &mut [T], x: &[T], w: &[T], offset: T, eps: f64) {
    let dim = w.len();
    out.par_chunks_mut(dim).zip(rstd.par_iter_mut()).zip(x.par_chunks(dim)).for_each(|((o, r), xr)| {
        let ms = xr.iter().map(|&v| v * v).sum::<T>() / T::from_f64(dim as f64);
        *r = T::one() / (ms + T::from_f64(eps)).sqrt();
        o.iter_mut().zip(xr).zip(w).for_each(|((o, &xv), &wv)| *o = (offset + wv) * (xv * *r));
    });
}

/// Backward of [`rmsnorm_forward`]: `dx += ∂L/∂x`, `dw += ∂L/∂w` (skipped for a frozen gain).
pub fn rmsnorm_backward<T: Real>(
    dx: &mut [T],
    dw: Option<&mut [T]>,
    dout: &[T],
    x: &[T],
    w: &[T],
    offset: T,
    rstd: &[T],
) {
    let dim = w.len();
    let inv_dim = T::from_f64(1.0 / dim as f64);
    dx.par_chunks_mut(dim).zip(dout.par_chunks(dim)).zip(x.par_chunks(dim)).zip(rstd.par_iter()).for_each(
        |(((dxr, dor), xr), &r)| {
            // dx = r·(γ⊙dy) − r³/dim · x · Σ(γ⊙dy⊙x), γ = offset + w
            let dot: T = dor.iter().zip(xr).zip(w).map(|((&g, &xv), &wv)| g * (offset + wv) * xv).sum();
            let c = r * r * r * inv_dim * dot;
            for (((d, &g), &xv), &wv) in dxr.iter_mut().zip(dor).zip(xr).zip(w) {
                *d += r * (offset + wv) * g - c * xv;
            }
        },
    );
    if let Some(dw) = dw {
        accumulate_rows(rstd.len(), dw, |row, acc| {
            let (dor, xr, r) = (&dout[row * dim..(row + 1) * dim], &x[row * dim..(row + 1) * dim], rstd[row]);
            acc.iter_mut().zip(dor).zip(xr).for_each(|((a, &g), &xv)| *a = g * xv * r);
        });
    }
}
