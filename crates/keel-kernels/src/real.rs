//! The floating-point types the kernels run in.

use num_traits::Float;

/// `f32` for training, `f64` for the finite-difference reference in tests.
pub trait Real: Float + Send + Sync + std::iter::Sum + std::ops::AddAssign + std::fmt::Debug + 'static {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C` (BLAS `gemm` semantics).
    #[allow(clippy::too_many_arguments)]
    fn gemm_raw(
        trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize, alpha: Self,
        a: &[Self], lda: usize, b: &[Self], ldb: usize, beta: Self, c: &mut [Self], ldc: usize,
    );
    /// Row-major `y = alpha · A·x + beta · y` for `A` `[m × n]` with leading dimension `lda`.
    #[allow(clippy::too_many_arguments)]
    fn gemv_raw(m: usize, n: usize, alpha: Self, a: &[Self], lda: usize, x: &[Self], beta: Self, y: &mut [Self]);
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn gemm_raw(
        trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize, alpha: f32,
        a: &[f32], lda: usize, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize,
    ) {
        crate::gemm::check_gemm_args(trans_a, trans_b, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
        // SAFETY: the extents of A, B and C were checked against the slices just above.
        unsafe {
            crate::gemm::ffi::cblas_sgemm(
                crate::gemm::ffi::ROW_MAJOR, crate::gemm::ffi::trans(trans_a), crate::gemm::ffi::trans(trans_b),
                m as i32, n as i32, k as i32, alpha, a.as_ptr(), lda as i32, b.as_ptr(), ldb as i32,
                beta, c.as_mut_ptr(), ldc as i32,
            )
        }
    }
    fn gemv_raw(m: usize, n: usize, alpha: f32, a: &[f32], lda: usize, x: &[f32], beta: f32, y: &mut [f32]) {
        assert!(lda >= n && a.len() >= (m.max(1) - 1) * lda + n && x.len() >= n && y.len() >= m, "gemv: bad extents");
        // SAFETY: extents checked above.
        unsafe {
            crate::gemm::ffi::cblas_sgemv(
                crate::gemm::ffi::ROW_MAJOR, crate::gemm::ffi::trans(false), m as i32, n as i32, alpha, a.as_ptr(),
                lda as i32, x.as_ptr(), 1, beta, y.as_mut_ptr(), 1,
            )
        }
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn gemm_raw(
        trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize, alpha: f64,
        a: &[f64], lda: usize, b: &[f64], ldb: usize, beta: f64, c: &mut [f64], ldc: usize,
    ) {
        crate::gemm::check_gemm_args(trans_a, trans_b, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
        // SAFETY: as above.
        unsafe {
            crate::gemm::ffi::cblas_dgemm(
                crate::gemm::ffi::ROW_MAJOR, crate::gemm::ffi::trans(trans_a), crate::gemm::ffi::trans(trans_b),
                m as i32, n as i32, k as i32, alpha, a.as_ptr(), lda as i32, b.as_ptr(), ldb as i32,
                beta, c.as_mut_ptr(), ldc as i32,
            )
        }
    }
    fn gemv_raw(m: usize, n: usize, alpha: f64, a: &[f64], lda: usize, x: &[f64], beta: f64, y: &mut [f64]) {
        assert!(lda >= n && a.len() >= (m.max(1) - 1) * lda + n && x.len() >= n && y.len() >= m, "gemv: bad extents");
        // SAFETY: extents checked above.
        unsafe {
            crate::gemm::ffi::cblas_dgemv(
                crate::gemm::ffi::ROW_MAJOR, crate::gemm::ffi::trans(false), m as i32, n as i32, alpha, a.as_ptr(),
                lda as i32, x.as_ptr(), 1, beta, y.as_mut_ptr(), 1,
            )
        }
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}
