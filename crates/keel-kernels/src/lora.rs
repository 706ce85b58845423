//! Low-rank adapters: `y += s · (x·Aᵀ)·Bᵀ` with `A` `[r × in]`, `B` `[out × r]`, `s = α/r`.
//! The frozen base product is computed separately; these kernels add the adapter's part.

use crate::gemm::gemm_strided_scaled;
use crate::Real;

/// `u = x·Aᵀ` (kept for the backward) and `y += s · u·Bᵀ`.
#[allow(clippy::too_many_arguments)]
pub fn lora_forward<T: Real>(
    y: &mut [T],
    u: &mut [T],
    x: &[T],
    a: &[T],
    b: &[T],
    n_in: usize,
    n_out: usize,
    rank: usize,
    scale: T,
) {
    let rows = x.len() / n_in;
    gemm_strided_scaled(false, true, rows, rank, n_in, T::one(), x, n_in, a, n_in, T::zero(), u, rank);
    gemm_strided_scaled(false, true, rows, n_out, rank, scale, u, rank, b, rank, T::one(), y, n_out);
}

/// Backward of [`lora_forward`]: `dB += s·dyᵀ·u`, `du = s·dy·B`, `dA += duᵀ·x`, `dx += du·A`.
/// `du` is scratch of `[rows × rank]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_backward<T: Real>(
    dx: &mut [T],
    da: &mut [T],
    db: &mut [T],
    du: &mut [T],
    dy: &[T],
    x: &[T],
    u: &[T],
    a: &[T],
    b: &[T],
    n_in: usize,
    n_out: usize,
    rank: usize,
    scale: T,
) {
    let rows = x.len() / n_in;
    gemm_strided_scaled(true, false, n_out, rank, rows, scale, dy, n_out, u, rank, T::one(), db, rank);
    gemm_strided_scaled(false, false, rows, rank, n_out, scale, dy, n_out, b, rank, T::zero(), du, rank);
    gemm_strided_scaled(true, false, rank, n_in, rows, T::one(), du, rank, x, n_in, T::one(), da, n_in);
    gemm_strided_scaled(false, false, rows, n_in, rank, T::one(), du, rank, a, n_in, T::one(), dx, n_in);
}
