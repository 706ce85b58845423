//! Matrix products: OpenBLAS's single-threaded GEMM, split across keel's threads.
//!
//! OpenBLAS runs with one thread; keel partitions each product over the rayon pool itself, along
//! the larger output dimension. That keeps one thread pool on the machine (no spinning BLAS
//! threads competing with keel's element-wise kernels) and makes the partition depend only on the
//! thread count, so results are reproducible for a given count.

use crate::Real;
use std::sync::Once;

pub(crate) mod ffi {
    pub const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;
    pub fn trans(t: bool) -> i32 {
        if t {
            TRANS
        } else {
            NO_TRANS
        }
    }
    extern "C" {
        pub fn cblas_sgemm(
            order: i32,
            ta: i32,
            tb: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
        pub fn cblas_dgemm(
            order: i32,
            ta: i32,
            tb: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f64,
            a: *const f64,
            lda: i32,
            b: *const f64,
            ldb: i32,
            beta: f64,
            c: *mut f64,
            ldc: i32,
        );
        pub fn cblas_sgemv(
            order: i32,
            ta: i32,
            m: i32,
            n: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            x: *const f32,
            incx: i32,
            beta: f32,
            y: *mut f32,
            incy: i32,
        );
        pub fn cblas_dgemv(
            order: i32,
            ta: i32,
            m: i32,
            n: i32,
            alpha: f64,
            a: *const f64,
            lda: i32,
            x: *const f64,
            incx: i32,
            beta: f64,
            y: *mut f64,
            incy: i32,
        );
        pub fn openblas_set_num_threads(n: i32);
        pub fn openblas_get_corename() -> *const std::ffi::c_char;
    }
}

static SINGLE_THREADED_BLAS: Once = Once::new();

/// Makes OpenBLAS run every call on the calling thread (keel does the threading).
pub fn ensure_single_threaded_blas() {
    // SAFETY: plain FFI call without pointers.
    SINGLE_THREADED_BLAS.call_once(|| unsafe { ffi::openblas_set_num_threads(1) });
}

/// The kernels OpenBLAS chose for this CPU (`Haswell`, `SkylakeX`, `Prescott`, ...).
pub fn blas_core() -> String {
    // SAFETY: OpenBLAS returns a pointer to a static NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(ffi::openblas_get_corename()) }.to_string_lossy().into_owned()
}

/// OpenBLAS kernels this CPU runs that are faster than the ones OpenBLAS chose, if any.
///
/// OpenBLAS picks its kernels by CPU model, and a release older than the CPU falls back to its
/// generic SSE3 `Prescott` kernels: Debian 12's 0.3.21 does so on the Xeons this project runs on,
/// where a training step then takes 4.2× as long and a prompt 3× (BENCHMARKS.md). The
/// environment variable `OPENBLAS_CORETYPE`, read when the library loads, overrides the choice;
/// `keel` restarts itself with it set to what this returns.
pub fn better_blas_core() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let generic = ["Prescott", "Katmai", "Coppermine", "Northwood", "Banias", "Core2", "Penryn", "Dunnington"];
        if !generic.contains(&blas_core().as_str()) {
            return None;
        }
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            return Some("SkylakeX");
        }
        if has!("avx2") && has!("fma") {
            return Some("Haswell");
        }
    }
    None
}

/// Elements a row-major `rows × cols` matrix with leading dimension `ld` spans.
fn extent(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn check_gemm_args(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a_len: usize,
    lda: usize,
    b_len: usize,
    ldb: usize,
    c_len: usize,
    ldc: usize,
) {
    let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if trans_b { (n, k) } else { (k, n) };
    assert!(
        lda >= ac.max(1) && a_len >= extent(ar, ac, lda),
        "gemm: A is {a_len} elements, needs {ar}x{ac} (lda {lda})"
    );
    assert!(
        ldb >= bc.max(1) && b_len >= extent(br, bc, ldb),
        "gemm: B is {b_len} elements, needs {br}x{bc} (ldb {ldb})"
    );
    assert!(ldc >= n.max(1) && c_len >= extent(m, n, ldc), "gemm: C is {c_len} elements, needs {m}x{n} (ldc {ldc})");
    assert!(m < i32::MAX as usize && n < i32::MAX as usize && k < i32::MAX as usize);
}

/// Row-major `C[m×n] = op(A) · op(B) + beta · C` with `op(A)` `m×k` and `op(B)` `k×n`, dense
/// (leading dimensions equal to the stored widths), split across the thread pool.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    beta: T,
    c: &mut [T],
) {
    let lda = if trans_a { m } else { k };
    let ldb = if trans_b { k } else { n };
    gemm_strided_scaled(trans_a, trans_b, m, n, k, T::one(), a, lda, b, ldb, beta, c, n);
}

/// `C = alpha · op(A) · op(B) + beta · C` with explicit leading dimensions (sub-blocks of wider
/// matrices, e.g. one head of Q).
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided_scaled<T: Real>(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    check_gemm_args(trans_a, trans_b, m, n, k, a.len(), lda, b.len(), ldb, c.len(), ldc);
    ensure_single_threaded_blas();
    let threads = rayon::current_num_threads();
    // A product this small (by work, and by the bytes it reads) is not worth splitting.
    let work = m as f64 * n as f64 * k as f64;
    let serial = threads == 1 || work < 2.5e5 || rayon::current_thread_index().is_some();
    if m == 1 && !trans_a && trans_b {
        // One row times a transposed matrix (decoding one token): a matrix-vector product.
        return gemv_rows(n, k, alpha, b, ldb, a, beta, c, if serial { 1 } else { threads });
    }
    if serial {
        // Products issued from inside a parallel region run on this thread.
        T::gemm_raw(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    let part = len.div_ceil(threads).next_multiple_of(16);
    let c_ptr = SendPtr(c.as_mut_ptr());
    let c_len = c.len();
    rayon::scope(|s| {
        for start in (0..len).step_by(part) {
            let count = part.min(len - start);
            let c_ptr = &c_ptr;
            s.spawn(move |_| {
                let (a_off, b_off, c_off) = if split_rows {
                    (if trans_a { start } else { start * lda }, 0, start * ldc)
                } else {
                    (0, if trans_b { start * ldb } else { start }, start)
                };
                let (mm, nn) = if split_rows { (count, n) } else { (m, count) };
                let c_span = extent(mm, nn, ldc);
                assert!(c_off + c_span <= c_len);
                // SAFETY: the parts write disjoint rows (or disjoint columns) of C; each view spans
                // only the part's own rows, and for column parts the other parts' elements inside
                // the span are never touched by this call.
                let c_part = unsafe { std::slice::from_raw_parts_mut(c_ptr.0.add(c_off), c_span) };
                T::gemm_raw(trans_a, trans_b, mm, nn, k, alpha, &a[a_off..], lda, &b[b_off..], ldb, beta, c_part, ldc);
            });
        }
    });
}

/// `y[..rows] = alpha · W·x + beta · y` with `W` `[rows × cols]` (leading dimension `ldw`),
/// its rows split over `parts` threads.
#[allow(clippy::too_many_arguments)]
fn gemv_rows<T: Real>(
    rows: usize,
    cols: usize,
    alpha: T,
    w: &[T],
    ldw: usize,
    x: &[T],
    beta: T,
    y: &mut [T],
    parts: usize,
) {
    use rayon::prelude::*;
    let part = rows.div_ceil(parts).next_multiple_of(16);
    y[..rows].par_chunks_mut(part).enumerate().for_each(|(i, y)| {
        T::gemv_raw(y.len(), cols, alpha, &w[i * part * ldw..], ldw, x, beta, y);
    });
}

pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: used only to hand disjoint parts of one output buffer to scoped threads.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn split_products_equal_naive_in_all_transpositions() {
        let (m, n, k) = (130, 90, 70);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 101) as f64 - 50.0) / 50.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| ((i * 53 % 97) as f64 - 48.0) / 48.0).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = naive(ta, tb, m, n, k, &a, &b);
            for (mm, nn) in [(m, n), (n, m)] {
                if (mm, nn) != (m, n) {
                    continue;
                }
                let mut c = vec![1.0; mm * nn];
                gemm(ta, tb, mm, nn, k, &a, &b, 0.0, &mut c);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-9, "{ta} {tb}: {x} vs {y}");
                }
            }
        }
        // One row times a transposed matrix goes through the split matrix-vector path.
        for (n, k) in [(700, 300), (5, 3)] {
            let a: Vec<f64> = (0..k).map(|i| (i % 9) as f64 - 4.0).collect();
            let b: Vec<f64> = (0..n * k).map(|i| (i % 11) as f64 - 5.0).collect();
            let want = naive(false, true, 1, n, k, &a, &b);
            let mut c = vec![2.0; n];
            gemm(false, true, 1, n, k, &a, &b, 0.0, &mut c);
            assert_eq!(c, want);
        }
        // beta = 1 accumulates, and a wide product splits along columns.
        let (m, n, k) = (20, 300, 400);
        let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| (i % 5) as f64 - 2.0).collect();
        let want = naive(false, true, m, n, k, &a, &b);
        let mut c = vec![1.0; m * n];
        gemm(false, true, m, n, k, &a, &b, 1.0, &mut c);
        for (x, y) in c.iter().zip(&want) {
            assert_eq!(*x, y + 1.0);
        }
    }
}
