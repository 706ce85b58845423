//! Causal grouped-query attention with a segment mask.
//!
//! Token `i` attends to token `j` of the same sequence row when `j ≤ i` and both carry the same
//! nonzero segment id. Segment 0 is padding: a padding query outputs zeros and gets no gradient.
//! Segments express both an attention mask (1 = real, 0 = pad) and packed sequences (1, 2, 3, …)
//! that must not see each other. Query head `h` reads KV head `h / (heads / kv_heads)`.
//!
//! A shared prefix: a segment id `(k << 16) | c` with `c ≥ 1` also sees the earlier tokens of
//! segment `k << 16`. Scoring lays out one context (`k << 16`) followed by each of its
//! continuations (`c = 1, 2, …`), so the context is computed once for all of them.

use crate::Real;
use rayon::prelude::*;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }
    fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
    /// Elements of the saved probabilities, `[batch × heads × seq × seq]`.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq
    }
    /// Elements of the backward scratch, `[batch × seq × seq]`.
    pub fn scratch_len(&self) -> usize {
        self.batch * self.seq * self.seq
    }
}

/// Runs `f(b, …)` for every batch row, in parallel when there are enough rows to occupy the pool
/// (otherwise row by row, so that each row's matrix products use all threads).
fn for_each_row<A: Send, F: Fn(usize, A) + Sync + Send>(items: Vec<A>, f: F) {
    if items.len() >= rayon::current_num_threads() {
        items.into_par_iter().enumerate().for_each(|(b, a)| f(b, a));
    } else {
        items.into_iter().enumerate().for_each(|(b, a)| f(b, a));
    }
}

/// `out = softmax(mask(q·kᵀ/√d))·v`, keeping the probabilities for the backward.
pub fn attention_forward<T: Real>(
    out: &mut [T], probs: &mut [T], q: &[T], k: &[T], v: &[T], segments: &[u32], s: AttnShape,
) {
    let (t, d, qw, kw) = (s.seq, s.head_dim, s.q_width(), s.kv_width());
    let scale = T::from_f64(1.0 / (d as f64).sqrt());
    let rows: Vec<_> = out.chunks_mut(t * qw).zip(probs.chunks_mut(s.heads * t * t)).collect();
    for_each_row(rows, |b, (out_b, probs_b)| {
        let (q_b, k_b, v_b) = (&q[b * t * qw..], &k[b * t * kw..], &v[b * t * kw..]);
        let seg = &segments[b * t..(b + 1) * t];
        for h in 0..s.heads {
            let kvh = h / s.group();
            let p = &mut probs_b[h * t * t..(h + 1) * t * t];
            crate::gemm::gemm_strided_scaled(false, true, t, t, d, scale, &q_b[h * d..], qw, &k_b[kvh * d..], kw, T::zero(), p, t);
            for i in 0..t {
                masked_softmax_row(&mut p[i * t..(i + 1) * t], seg, i);
            }
            crate::gemm::gemm_strided_scaled(false, false, t, d, t, T::one(), p, t, &v_b[kvh * d..], kw, T::zero(), &mut out_b[h * d..], qw);
        }
    });
}

/// The part of a segment id that names its shared prefix (see the module docs).
const PREFIX_MASK: u32 = !0xFFFF;

/// Whether a query of segment `query` may see an earlier key of segment `key`.
pub fn segment_sees(query: u32, key: u32) -> bool {
    query != 0 && key != 0 && (key == query || key == query & PREFIX_MASK)
}

/// Softmax of row `i` over the keys it may see; every other entry becomes 0.
fn masked_softmax_row<T: Real>(row: &mut [T], seg: &[u32], i: usize) {
    let visible = |j: usize| j <= i && segment_sees(seg[i], seg[j]);
    let mut max = T::neg_infinity();
    for (j, &x) in row.iter().enumerate() {
        if visible(j) && x > max {
            max = x;
        }
    }
    if max == T::neg_infinity() {
        row.iter_mut().for_each(|x| *x = T::zero());
        return;
    }
    let mut sum = T::zero();
    for (j, x) in row.iter_mut().enumerate() {
        *x = if visible(j) { (*x - max).exp() } else { T::zero() };
        sum += *x;
    }
    let inv = T::one() / sum;
    row.iter_mut().for_each(|x| *x = *x * inv);
}

/// Backward of [`attention_forward`]: writes `dq`, `dk`, `dv` (not accumulated).
/// `scratch` holds `[batch × seq × seq]` elements.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T], dk: &mut [T], dv: &mut [T], scratch: &mut [T], dout: &[T], probs: &[T], q: &[T], k: &[T],
    v: &[T], s: AttnShape,
) {
    let (t, d, qw, kw) = (s.seq, s.head_dim, s.q_width(), s.kv_width());
    let scale = T::from_f64(1.0 / (d as f64).sqrt());
    let rows: Vec<_> = dq
        .chunks_mut(t * qw)
        .zip(dk.chunks_mut(t * kw))
        .zip(dv.chunks_mut(t * kw))
        .zip(scratch.chunks_mut(t * t))
        .collect();
    for_each_row(rows, |b, (((dq_b, dk_b), dv_b), ds)| {
        let (q_b, k_b, v_b, do_b) = (&q[b * t * qw..], &k[b * t * kw..], &v[b * t * kw..], &dout[b * t * qw..]);
        dk_b.iter_mut().chain(dv_b.iter_mut()).for_each(|x| *x = T::zero());
        for h in 0..s.heads {
            let kvh = h / s.group();
            let p = &probs[(b * s.heads + h) * t * t..(b * s.heads + h + 1) * t * t];
            // dP = dO·Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)).
            crate::gemm::gemm_strided_scaled(false, true, t, t, d, T::one(), &do_b[h * d..], qw, &v_b[kvh * d..], kw, T::zero(), ds, t);
            for i in 0..t {
                let (pr, dr) = (&p[i * t..(i + 1) * t], &mut ds[i * t..(i + 1) * t]);
                let dot: T = pr.iter().zip(dr.iter()).map(|(&a, &b)| a * b).sum();
                dr.iter_mut().zip(pr).for_each(|(g, &pv)| *g = pv * (*g - dot));
            }
            crate::gemm::gemm_strided_scaled(false, false, t, d, t, scale, ds, t, &k_b[kvh * d..], kw, T::zero(), &mut dq_b[h * d..], qw);
            crate::gemm::gemm_strided_scaled(true, false, t, d, t, scale, ds, t, &q_b[h * d..], qw, T::one(), &mut dk_b[kvh * d..], kw);
            crate::gemm::gemm_strided_scaled(true, false, t, d, t, T::one(), p, t, &do_b[h * d..], qw, T::one(), &mut dv_b[kvh * d..], kw);
        }
    });
}

/// Sizes of one cached-attention call: `new` query tokens per row attend to `past + new` cached
/// keys, the first `pads[b]` of which are left padding.
#[derive(Clone, Copy, Debug)]
pub struct CachedShape {
    pub batch: usize,
    pub new: usize,
    pub past: usize,
    /// Rows the cache holds per sequence.
    pub capacity: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Attention for incremental decoding: `q` is `[batch × new × heads·d]`, the caches
/// `[batch × capacity × kv_heads·d]` already hold the new tokens' keys and values at rows
/// `past..past + new`. Query `i` sees cache rows `pads[b]..=past + i`. `scores` holds
/// `[batch × new × (past + new)]` elements.
pub fn attention_cached<T: Real>(
    out: &mut [T], scores: &mut [T], q: &[T], k_cache: &[T], v_cache: &[T], pads: &[usize], s: CachedShape,
) {
    let (d, qw, kw, len) = (s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim, s.past + s.new);
    let group = s.heads / s.kv_heads;
    let scale = T::from_f64(1.0 / (d as f64).sqrt());
    let rows: Vec<_> = out.chunks_mut(s.new * qw).zip(scores.chunks_mut(s.new * len)).collect();
    for_each_row(rows, |b, (out_b, sc)| {
        let (q_b, k_b, v_b) = (&q[b * s.new * qw..], &k_cache[b * s.capacity * kw..], &v_cache[b * s.capacity * kw..]);
        for h in 0..s.heads {
            let kvh = h / group;
            crate::gemm::gemm_strided_scaled(false, true, s.new, len, d, scale, &q_b[h * d..], qw, &k_b[kvh * d..], kw, T::zero(), sc, len);
            for i in 0..s.new {
                let row = &mut sc[i * len..(i + 1) * len];
                let visible = pads[b]..=s.past + i;
                if visible.is_empty() {
                    // A padding query: it sees nothing and outputs zeros.
                    row.fill(T::zero());
                    continue;
                }
                let max = row[visible.clone()].iter().copied().fold(T::neg_infinity(), T::max);
                let mut sum = T::zero();
                for (j, x) in row.iter_mut().enumerate() {
                    *x = if visible.contains(&j) { (*x - max).exp() } else { T::zero() };
                    sum += *x;
                }
                let inv = T::one() / sum;
                row.iter_mut().for_each(|x| *x = *x * inv);
            }
            crate::gemm::gemm_strided_scaled(false, false, s.new, d, len, T::one(), sc, len, &v_b[kvh * d..], kw, T::zero(), &mut out_b[h * d..], qw);
        }
    });
}
