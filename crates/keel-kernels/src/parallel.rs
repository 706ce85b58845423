//! The thread pool and reproducible reductions.

use crate::Real;
use rayon::prelude::*;

/// Rows per chunk of a cross-row reduction. Fixed (not derived from the thread count) so that the
/// order of floating-point additions, and hence the result, never depends on the thread count.
pub const REDUCE_ROWS: usize = 64;

/// The most worker threads per core [`init_threads`] accepts.
pub const MAX_THREADS_PER_CORE: usize = 8;

/// Sets the number of worker threads for all kernels. Call once, before any kernel runs; later
/// calls with the same count are no-ops.
pub fn init_threads(threads: usize) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Far more threads than cores only slows the kernels, and tens of thousands hang at start.
    if threads > MAX_THREADS_PER_CORE * cores {
        return Err(format!(
            "{threads} threads is more than {MAX_THREADS_PER_CORE} per core of this machine's {cores} cores; use at most {}",
            MAX_THREADS_PER_CORE * cores
        ));
    }
    crate::gemm::ensure_single_threaded_blas();
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == threads => Ok(()),
        Err(_) => Err(format!(
            "the thread pool is already running with {} threads; cannot switch to {threads}",
            rayon::current_num_threads()
        )),
    }
}

/// `out[j] += Σ_rows f(row)[j]` where `f` writes one row's contribution into a zeroed scratch of
/// `out.len()`. Rows are summed in fixed chunks of [`REDUCE_ROWS`], then the chunk sums in order.
pub fn accumulate_rows<T: Real>(rows: usize, out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let width = out.len();
    let partials: Vec<Vec<T>> = (0..rows.div_ceil(REDUCE_ROWS))
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![T::zero(); width];
            let mut row_buf = vec![T::zero(); width];
            for r in chunk * REDUCE_ROWS..((chunk + 1) * REDUCE_ROWS).min(rows) {
                row_buf.iter_mut().for_each(|x| *x = T::zero());
                f(r, &mut row_buf);
                acc.iter_mut().zip(&row_buf).for_each(|(a, &b)| *a += b);
            }
            acc
        })
        .collect();
    for p in partials {
        out.iter_mut().zip(&p).for_each(|(a, &b)| *a += b);
    }
}

/// Σ f(i) over `0..n` in f64, reproducibly (fixed chunks of 4096, summed in order).
pub fn sum_f64(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    const CHUNK: usize = 4096;
    let partials: Vec<f64> =
        (0..n.div_ceil(CHUNK)).into_par_iter().map(|c| (c * CHUNK..((c + 1) * CHUNK).min(n)).map(&f).sum()).collect();
    partials.iter().sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_count_far_beyond_the_cores_is_refused() {
        let err = super::init_threads(100_000).unwrap_err();
        assert!(err.contains("100000 threads") && err.contains("per core"), "{err}");
    }
}
