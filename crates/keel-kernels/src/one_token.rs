//! Attention of one new token over its sequence's KV cache: the inner loop of decoding.
//!
//! A decoding step of 16 sequences at ~530 cached tokens spent half its time here (BENCHMARKS.md,
//! "Decoding is memory-bound"). Written per key, each score ended in a horizontal sum of one
//! vector, and each value update loaded and stored the whole output row. The AVX2 kernel scores
//! 8 keys at a time (eight dot products reduced together into one vector of scores) and keeps the
//! outputs of up to 3 heads × 32 dimensions in registers while the values stream past.

use crate::real::Real;

/// One KV head's cached keys and values: row `t` of each starts at `t · stride`; rows
/// `first..len` are seen.
pub(crate) struct OneTokenKeys<'c, T> {
    pub k: &'c [T],
    pub v: &'c [T],
    pub stride: usize,
    pub first: usize,
    pub len: usize,
    pub d: usize,
}

/// One new token's attention for the `q.len() / d` query heads that share one KV head, over its
/// cached rows `first..len`: `out[g] = softmax(q[g]·Kᵀ · scale) · V`. Each key and value row is
/// read once for all the heads, straight from the cache. `scores` is `[heads × len]` scratch.
pub(crate) fn attend_one_token<T: Real>(out: &mut [T], scores: &mut [T], q: &[T], c: OneTokenKeys<T>, scale: T) {
    #[cfg(target_arch = "x86_64")]
    if c.d.is_multiple_of(32)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        if let Some(f) = F32Views::of(&mut *out, &mut *scores, q, &c) {
            let keys = OneTokenKeys { k: f.k, v: f.v, stride: c.stride, first: c.first, len: c.len, d: c.d };
            // SAFETY: AVX2 and FMA were just detected.
            unsafe { avx2::attend(f.out, f.scores, f.q, keys, scale.to_f64() as f32) };
            return;
        }
    }
    attend_generic(out, scores, q, c, scale)
}

fn attend_generic<T: Real>(out: &mut [T], scores: &mut [T], q: &[T], c: OneTokenKeys<T>, scale: T) {
    let (d, len) = (c.d, c.len);
    let heads = q.len() / d;
    for t in c.first..len {
        let key = &c.k[t * c.stride..t * c.stride + d];
        for g in 0..heads {
            scores[g * len + t] = dot(&q[g * d..(g + 1) * d], key) * scale;
        }
    }
    for g in 0..heads {
        softmax_span(&mut scores[g * len..(g + 1) * len], c.first, len);
    }
    out.fill(T::zero());
    for t in c.first..len {
        let value = &c.v[t * c.stride..t * c.stride + d];
        for g in 0..heads {
            let p = scores[g * len + t];
            out[g * d..(g + 1) * d].iter_mut().zip(value).for_each(|(o, &v)| *o += p * v);
        }
    }
}

/// `a · b` in eight interleaved partial sums (which the compiler keeps in one vector register),
/// reduced as `((s₀+s₄) + (s₁+s₅)) + ((s₂+s₆) + (s₃+s₇))`; the AVX2 kernel reduces in the same
/// order, so both give the same scores.
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = a8.remainder().iter().zip(b8.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Softmax over the entries `first..end` of `row`; the rest become 0.
pub(crate) fn softmax_span<T: Real>(row: &mut [T], first: usize, end: usize) {
    row[..first].fill(T::zero());
    let (seen, hidden) = row[first..].split_at_mut(end - first);
    let max = seen.iter().copied().fold(T::neg_infinity(), T::max);
    seen.iter_mut().for_each(|x| *x = *x - max);
    T::exp_in_place(seen);
    let sum = seen.iter().fold(T::zero(), |s, &x| s + x);
    let inv = T::one() / sum;
    seen.iter_mut().for_each(|x| *x = *x * inv);
    hidden.fill(T::zero());
}

/// The kernel's slices seen as f32, when `T` is f32.
#[cfg(target_arch = "x86_64")]
struct F32Views<'a> {
    out: &'a mut [f32],
    scores: &'a mut [f32],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

#[cfg(target_arch = "x86_64")]
impl<'a> F32Views<'a> {
    fn of<T: Real>(out: &'a mut [T], scores: &'a mut [T], q: &'a [T], c: &OneTokenKeys<'a, T>) -> Option<Self> {
        if std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>() {
            return None;
        }
        // SAFETY: T is f32 (checked above), so each slice is the same memory with the same type.
        unsafe {
            let m = |s: &'a mut [T]| std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len());
            let r = |s: &'a [T]| std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len());
            Some(F32Views { out: m(out), scores: m(scores), q: r(q), k: r(c.k), v: r(c.v) })
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{softmax_span, OneTokenKeys};
    use std::arch::x86_64::*;

    /// Keys scored together.
    const KB: usize = 8;
    /// Heads and 8-wide output vectors kept in registers while the values stream: 3 × 4
    /// accumulators, 4 value vectors.
    const HEADS: usize = 3;
    const DV: usize = 4;
    /// Blocks of keys (and rows of values × KB) fetched ahead.
    const PREFETCH: usize = 4;

    /// `attend_one_token` for f32 with `d` a multiple of 32.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the slices must hold what `attend_one_token` documents.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn attend(out: &mut [f32], scores: &mut [f32], q: &[f32], c: OneTokenKeys<f32>, scale: f32) {
        let (d, len, first) = (c.d, c.len, c.first);
        let heads = q.len() / d;
        assert!(d.is_multiple_of(8 * DV) && out.len() == heads * d && scores.len() >= heads * len);
        assert!(first < len && (len - 1) * c.stride + d <= c.k.len().min(c.v.len()));
        let (kp, vp, qp, sp) = (c.k.as_ptr(), c.v.as_ptr(), q.as_ptr(), scores.as_mut_ptr());
        let mut t = first;
        while t + KB <= len {
            // A decoding step's KV cache is far larger than the CPU's caches: ask for the keys
            // PREFETCH blocks ahead, which streamed 1.2× faster than the hardware prefetcher alone
            // (BENCHMARKS.md, "IFEval generation").
            if t + (PREFETCH + 1) * KB <= len {
                for j in 0..KB {
                    let row = kp.add((t + PREFETCH * KB + j) * c.stride);
                    for i in (0..d).step_by(16) {
                        _mm_prefetch::<_MM_HINT_T0>(row.add(i) as *const i8);
                    }
                }
            }
            for g in 0..heads {
                let mut acc = [_mm256_setzero_ps(); KB];
                for i in (0..d).step_by(8) {
                    let qv = _mm256_loadu_ps(qp.add(g * d + i));
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, _mm256_loadu_ps(kp.add((t + j) * c.stride + i))));
                    }
                }
                let s = _mm256_mul_ps(reduce8(&acc), _mm256_set1_ps(scale));
                _mm256_storeu_ps(sp.add(g * len + t), s);
            }
            t += KB;
        }
        for t in t..len {
            for g in 0..heads {
                let key = std::slice::from_raw_parts(kp.add(t * c.stride), d);
                *sp.add(g * len + t) = super::dot(&q[g * d..(g + 1) * d], key) * scale;
            }
        }
        for g in 0..heads {
            softmax_span(&mut scores[g * len..(g + 1) * len], first, len);
        }
        let sp = scores.as_ptr();
        for g0 in (0..heads).step_by(HEADS) {
            let hs = HEADS.min(heads - g0);
            for i0 in (0..d).step_by(8 * DV) {
                let mut acc = [[_mm256_setzero_ps(); DV]; HEADS];
                for t in first..len {
                    let row = vp.add(t * c.stride + i0);
                    if i0 == 0 && t + PREFETCH * KB < len {
                        for i in (0..d).step_by(16) {
                            _mm_prefetch::<_MM_HINT_T0>(vp.add((t + PREFETCH * KB) * c.stride + i) as *const i8);
                        }
                    }
                    let v: [__m256; DV] = std::array::from_fn(|u| _mm256_loadu_ps(row.add(8 * u)));
                    for (h, acc) in acc.iter_mut().enumerate().take(hs) {
                        let p = _mm256_broadcast_ss(&*sp.add((g0 + h) * len + t));
                        for u in 0..DV {
                            acc[u] = _mm256_fmadd_ps(p, v[u], acc[u]);
                        }
                    }
                }
                for (h, acc) in acc.iter().enumerate().take(hs) {
                    for (u, a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(out.as_mut_ptr().add((g0 + h) * d + i0 + 8 * u), *a);
                    }
                }
            }
        }
    }

    /// The eight lane sums of `a[0..8]` as one vector, each reduced as
    /// `((l₀+l₄) + (l₁+l₅)) + ((l₂+l₆) + (l₃+l₇))`, the order of `super::dot`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce8(a: &[__m256; 8]) -> __m256 {
        // [a.lo + a.hi, b.lo + b.hi]: lanes (l₀+l₄, l₁+l₅, l₂+l₆, l₃+l₇) of a, then of b.
        let halves = |a: __m256, b: __m256| {
            _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b))
        };
        let (h01, h23, h45, h67) = (halves(a[0], a[1]), halves(a[2], a[3]), halves(a[4], a[5]), halves(a[6], a[7]));
        // Two horizontal adds finish each sum; the results land as (s₀ s₂ s₄ s₆ | s₁ s₃ s₅ s₇).
        let s = _mm256_hadd_ps(_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
        _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    #[test]
    fn the_kernel_equals_the_plain_formula_in_f64() {
        // Head sizes on and off the AVX2 kernel's multiple of 32, groups of 1–4 heads (more than
        // the 3 kept in registers), lengths on and off the 8-key blocks, with and without a window.
        for (d, heads, len, first) in
            [(64, 3, 530, 0), (64, 3, 17, 5), (32, 1, 8, 0), (256, 4, 75, 11), (12, 2, 9, 0), (64, 2, 1, 0)]
        {
            let stride = 2 * d + 8; // another KV head's columns between rows
            let (k, v) = (values(len * stride, 1), values(len * stride, 2));
            let q = values(heads * d, 3);
            let scale = 1.0 / (d as f32).sqrt();
            let keys = OneTokenKeys { k: &k, v: &v, stride, first, len, d };
            let mut out = vec![f32::NAN; heads * d];
            let mut scores = vec![f32::NAN; heads * len];
            attend_one_token(&mut out, &mut scores, &q, keys, scale);
            for g in 0..heads {
                let s: Vec<f64> = (first..len)
                    .map(|t| (0..d).map(|i| q[g * d + i] as f64 * k[t * stride + i] as f64).sum::<f64>() * scale as f64)
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
                for i in 0..d {
                    let want: f64 =
                        (first..len).map(|t| (s[t - first] - max).exp() / z * v[t * stride + i] as f64).sum();
                    let got = out[g * d + i] as f64;
                    assert!((got - want).abs() < 1e-5, "d {d} heads {heads} len {len}: out[{g}][{i}] {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn the_avx2_scores_equal_the_generic_ones_bit_for_bit() {
        let (d, heads, len, stride) = (64, 3, 43, 192);
        let (k, v, q) = (values(len * stride, 4), values(len * stride, 5), values(heads * d, 6));
        let run = |generic: bool| {
            let (mut out, mut scores) = (vec![0f32; heads * d], vec![0f32; heads * len]);
            let keys = OneTokenKeys { k: &k, v: &v, stride, first: 3, len, d };
            if generic {
                attend_generic(&mut out, &mut scores, &q, keys, 0.125);
            } else {
                attend_one_token(&mut out, &mut scores, &q, keys, 0.125);
            }
            (out, scores)
        };
        let ((out_g, scores_g), (out_k, scores_k)) = (run(true), run(false));
        assert_eq!(scores_g, scores_k, "the probabilities differ");
        for (a, b) in out_g.iter().zip(&out_k) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }
}
