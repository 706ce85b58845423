//! Linear layers `y = x·Wᵀ (+ b)` with weights stored `[out × in]`, as in Hugging Face.

use crate::gemm::gemm;
use crate::parallel::accumulate_rows;
use crate::Real;
use rayon::prelude::*;

/// `y[N×out] = x[N×in] · Wᵀ + b`.
pub fn linear_forward<T: Real>(y: &mut [T], x: &[T], w: &[T], b: Option<&[T]>, n_in: usize, n_out: usize) {
    let rows = x.len() / n_in;
    gemm(false, true, rows, n_out, n_in, x, w, T::zero(), y);
    if let Some(b) = b {
        y.par_chunks_mut(n_out).for_each(|r| r.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
    }
}

/// Backward of [`linear_forward`]: `dx (+)= dy·W` (accumulates when `accumulate_dx`),
/// `dw += dyᵀ·x`, `db += Σ_rows dy`. Frozen weights pass `dw = None` and skip their GEMM.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    dx: Option<&mut [T]>,
    accumulate_dx: bool,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    dy: &[T],
    x: &[T],
    w: &[T],
    n_in: usize,
    n_out: usize,
) {
    let rows = dy.len() / n_out;
    if let Some(dx) = dx {
        let beta = if accumulate_dx { T::one() } else { T::zero() };
        gemm(false, false, rows, n_in, n_out, dy, w, beta, dx);
    }
    if let Some(dw) = dw {
        gemm(true, false, n_out, n_in, rows, dy, x, T::one(), dw);
    }
    if let Some(db) = db {
        accumulate_rows(rows, db, |r, acc| acc.copy_from_slice(&dy[r * n_out..(r + 1) * n_out]));
    }
}
