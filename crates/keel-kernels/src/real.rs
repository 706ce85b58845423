//! The floating-point types the kernels run in.

use num_traits::Float;

/// `f32` for training, `f64` for the finite-difference reference in tests.
pub trait Real: Float + Send + Sync + std::iter::Sum + std::ops::AddAssign + std::fmt::Debug + 'static {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C` (BLAS `gemm` semantics).
    #[allow(clippy::too_many_arguments)]
    fn gemm_raw(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: Self,
        a: &[Self],
        lda: usize,
        b: &[Self],
        ldb: usize,
        beta: Self,
        c: &mut [Self],
        ldc: usize,
    );
    /// Row-major `y = alpha · A·x + beta · y` for `A` `[m × n]` with leading dimension `lda`.
    #[allow(clippy::too_many_arguments)]
    fn gemv_raw(m: usize, n: usize, alpha: Self, a: &[Self], lda: usize, x: &[Self], beta: Self, y: &mut [Self]);
    /// `x` rounded to this type (constants and f64 accumulators back into the kernel's type).
    fn from_f64(x: f64) -> Self;
    /// Widening to f64, for reductions accumulated in f64.
    fn to_f64(self) -> f64;
    /// `xs[i] = exp(xs[i])`. The softmaxes and SiLU spend their element-wise time here; `f32`
    /// runs eight at a time (see [`exp_f32`]).
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
}

impl Real for f32 {
    fn gemm_raw(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        crate::gemm::check_gemm_args(trans_a, trans_b, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
        // SAFETY: the extents of A, B and C were checked against the slices just above.
        unsafe {
            crate::gemm::ffi::cblas_sgemm(
                crate::gemm::ffi::ROW_MAJOR,
                crate::gemm::ffi::trans(trans_a),
                crate::gemm::ffi::trans(trans_b),
                m as i32,
                n as i32,
                k as i32,
                alpha,
                a.as_ptr(),
                lda as i32,
                b.as_ptr(),
                ldb as i32,
                beta,
                c.as_mut_ptr(),
                ldc as i32,
            )
        }
    }
    fn gemv_raw(m: usize, n: usize, alpha: f32, a: &[f32], lda: usize, x: &[f32], beta: f32, y: &mut [f32]) {
        assert!(lda >= n && a.len() >= (m.max(1) - 1) * lda + n && x.len() >= n && y.len() >= m, "gemv: bad extents");
        // SAFETY: extents checked above.
        unsafe {
            crate::gemm::ffi::cblas_sgemv(
                crate::gemm::ffi::ROW_MAJOR,
                crate::gemm::ffi::trans(false),
                m as i32,
                n as i32,
                alpha,
                a.as_ptr(),
                lda as i32,
                x.as_ptr(),
                1,
                beta,
                y.as_mut_ptr(),
                1,
            )
        }
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn exp_in_place(xs: &mut [f32]) {
        exp_f32(xs);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn gemm_raw(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a: &[f64],
        lda: usize,
        b: &[f64],
        ldb: usize,
        beta: f64,
        c: &mut [f64],
        ldc: usize,
    ) {
        crate::gemm::check_gemm_args(trans_a, trans_b, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
        // SAFETY: as above.
        unsafe {
            crate::gemm::ffi::cblas_dgemm(
                crate::gemm::ffi::ROW_MAJOR,
                crate::gemm::ffi::trans(trans_a),
                crate::gemm::ffi::trans(trans_b),
                m as i32,
                n as i32,
                k as i32,
                alpha,
                a.as_ptr(),
                lda as i32,
                b.as_ptr(),
                ldb as i32,
                beta,
                c.as_mut_ptr(),
                ldc as i32,
            )
        }
    }
    fn gemv_raw(m: usize, n: usize, alpha: f64, a: &[f64], lda: usize, x: &[f64], beta: f64, y: &mut [f64]) {
        assert!(lda >= n && a.len() >= (m.max(1) - 1) * lda + n && x.len() >= n && y.len() >= m, "gemv: bad extents");
        // SAFETY: extents checked above.
        unsafe {
            crate::gemm::ffi::cblas_dgemv(
                crate::gemm::ffi::ROW_MAJOR,
                crate::gemm::ffi::trans(false),
                m as i32,
                n as i32,
                alpha,
                a.as_ptr(),
                lda as i32,
                x.as_ptr(),
                1,
                beta,
                y.as_mut_ptr(),
                1,
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

/// `exp` over a slice of `f32`, within 2 ulp of the correctly rounded result: `x = n·ln 2 + r`
/// with `|r| ≤ ln 2 / 2`, `e^r` by its degree-7 Taylor polynomial (truncation below 1e-8
/// relative), scaled by `2ⁿ` through the exponent bits. Results that would be subnormal are 0;
/// overflow gives +∞; NaN stays NaN. Every element takes the same arithmetic whether it falls in
/// an 8-wide block or the scalar tail, so results do not depend on the slice's alignment.
pub fn exp_f32(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were just detected.
        unsafe { exp_f32_avx2(xs) };
        return;
    }
    xs.iter_mut().for_each(|x| *x = exp_f32_scalar(*x));
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n · LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Below this `eˣ` is subnormal in f32 (ln of the smallest normal).
const EXP_MIN: f32 = -87.336_55;
/// Above this `eˣ` overflows f32.
const EXP_MAX: f32 = 88.722_84;
/// `1/k!` for k = 7 down to 2.
const TAYLOR: [f32; 6] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5];

fn exp_f32_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < EXP_MIN {
        return 0.0;
    }
    if x > EXP_MAX {
        return f32::INFINITY;
    }
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = TAYLOR[0];
    for &c in &TAYLOR[1..] {
        p = p.mul_add(r, c);
    }
    let p = p.mul_add(r, 1.0).mul_add(r, 1.0);
    // n ∈ [-126, 128]: scale in two halves so that 2ⁿ itself never overflows.
    let half = (n as i32) / 2;
    p * f32::from_bits(((half + 127) as u32) << 23) * f32::from_bits(((n as i32 - half + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_f32_avx2(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        let x = _mm256_loadu_ps(c.as_ptr());
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(LOG2E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x));
        let mut p = _mm256_set1_ps(TAYLOR[0]);
        for &k in &TAYLOR[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k));
        }
        let one = _mm256_set1_ps(1.0);
        p = _mm256_fmadd_ps(_mm256_fmadd_ps(p, r, one), r, one);
        let ni = _mm256_cvtps_epi32(n);
        let half = _mm256_srai_epi32::<1>(_mm256_add_epi32(ni, _mm256_srli_epi32::<31>(ni)));
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(half, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias)));
        let mut y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
        y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_MIN)));
        y = _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_MAX)));
        y = _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        _mm256_storeu_ps(c.as_mut_ptr(), y);
    }
    chunks.into_remainder().iter_mut().for_each(|x| *x = exp_f32_scalar(*x));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite positive floats.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_f32_is_within_two_ulp_of_the_correctly_rounded_exp() {
        // A sweep over the whole normal range, plus the slice's scalar tail (len not a multiple of 8).
        let xs: Vec<f32> = (0..200_003).map(|i| EXP_MIN + (EXP_MAX - EXP_MIN) * i as f32 / 200_002.0).collect();
        let mut ys = xs.clone();
        exp_f32(&mut ys);
        let mut worst = 0;
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp() as f32;
            if want.is_finite() && want >= f32::MIN_POSITIVE {
                worst = worst.max(ulps(y, want));
            }
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        // The same value gives the same bits in a vector lane and in the tail.
        let mut a = vec![0.3f32; 9];
        exp_f32(&mut a);
        assert_eq!(a[0].to_bits(), a[8].to_bits());
    }

    #[test]
    fn exp_f32_edges() {
        let mut v = vec![f32::NEG_INFINITY, -100.0, 0.0, 100.0, f32::INFINITY, f32::NAN, -0.0, 1.0, 88.0];
        exp_f32(&mut v);
        assert_eq!(&v[..5], &[0.0, 0.0, 1.0, f32::INFINITY, f32::INFINITY]);
        assert!(v[5].is_nan());
        assert_eq!(v[6], 1.0);
        assert!(ulps(v[7], std::f32::consts::E) <= 1 && ulps(v[8], 88f64.exp() as f32) <= 2);
    }
}
