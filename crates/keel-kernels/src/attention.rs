//! Causal grouped-query attention with a segment mask.
//!
//! Token `i` attends to token `j` of the same sequence row when `j ≤ i` and both carry the same
//! nonzero segment id. Segment 0 is padding: a padding query outputs zeros and gets no gradient.
//! Segments express both an attention mask (1 = real, 0 = pad) and packed sequences (1, 2, 3, …)
//! that must not see each other. Query head `h` reads KV head `h / (heads / kv_heads)`.
//!
//! A sliding window (Mistral's, Gemma's local layers) also hides keys `window` or more positions
//! before the query: `pos(i) − pos(j) < window`, counted in positions so that a continuation
//! laid after another in a scoring row still sees its context at the right distance.
//!
//! A shared prefix: a segment id `(k << 16) | c` with `c ≥ 1` also sees the earlier tokens of
//! segment `k << 16`. Scoring lays out one context (`k << 16`) followed by each of its
//! continuations (`c = 1, 2, …`), so the context is computed once for all of them.

use crate::one_token::{attend_one_token, softmax_span, OneTokenKeys};
use crate::Real;
use rayon::prelude::*;

/// Sizes and constants of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequence rows.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The factor on `q·kᵀ`: `1/√head_dim`, or Gemma's `query_pre_attn_scalar^-½`.
    pub scale: f64,
    /// Keys at least this many positions before a query are hidden; `None` sees the whole past.
    pub window: Option<usize>,
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

/// `out = softmax(mask(scale · q·kᵀ))·v`, keeping the probabilities for the backward. `positions`
/// (`[batch × seq]`) place the tokens for the sliding window.
///
/// Causality is exploited: queries run in blocks of `QUERY_BLOCK` (64), and a block scores only
/// the keys up to its last query (the rest of its probability rows are zero).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(
    out: &mut [T],
    probs: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    segments: &[u32],
    positions: &[u32],
    s: AttnShape,
) {
    let (t, d, qw, kw) = (s.seq, s.head_dim, s.q_width(), s.kv_width());
    let scale = T::from_f64(s.scale);
    let rows: Vec<_> = out.chunks_mut(t * qw).zip(probs.chunks_mut(s.heads * t * t)).collect();
    for_each_row(rows, |b, (out_b, probs_b)| {
        let (q_b, k_b, v_b) = (&q[b * t * qw..], &k[b * t * kw..], &v[b * t * kw..]);
        let seen =
            Visibility { seg: &segments[b * t..(b + 1) * t], pos: &positions[b * t..(b + 1) * t], window: s.window };
        for h in 0..s.heads {
            let kvh = h / s.group();
            let p = &mut probs_b[h * t * t..(h + 1) * t * t];
            for (i0, n) in query_blocks(t) {
                let len = i0 + n;
                let p_blk = &mut p[i0 * t..];
                crate::gemm::gemm_strided_scaled(
                    false,
                    true,
                    n,
                    len,
                    d,
                    scale,
                    &q_b[i0 * qw + h * d..],
                    qw,
                    &k_b[kvh * d..],
                    kw,
                    T::zero(),
                    p_blk,
                    t,
                );
                for i in 0..n {
                    let row = &mut p_blk[i * t..(i + 1) * t];
                    masked_softmax_row(&mut row[..len], &seen, i0 + i);
                    row[len..].fill(T::zero());
                }
                crate::gemm::gemm_strided_scaled(
                    false,
                    false,
                    n,
                    d,
                    len,
                    T::one(),
                    p_blk,
                    t,
                    &v_b[kvh * d..],
                    kw,
                    T::zero(),
                    &mut out_b[i0 * qw + h * d..],
                    qw,
                );
            }
        }
    });
}

/// Blocks of queries `(first, count)` covering `0..t`.
fn query_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t).step_by(QUERY_BLOCK).map(move |i| (i, QUERY_BLOCK.min(t - i)))
}

/// The part of a segment id that names its shared prefix (see the module docs).
const PREFIX_MASK: u32 = !0xFFFF;

/// Whether a query of segment `query` may see an earlier key of segment `key`.
pub fn segment_sees(query: u32, key: u32) -> bool {
    query != 0 && key != 0 && (key == query || key == query & PREFIX_MASK)
}

/// One batch row's mask: its segments, positions and the sliding window.
struct Visibility<'r> {
    seg: &'r [u32],
    pos: &'r [u32],
    window: Option<usize>,
}

impl Visibility<'_> {
    /// Whether query `i` sees key `j` of the same row.
    fn sees(&self, i: usize, j: usize) -> bool {
        j <= i
            && segment_sees(self.seg[i], self.seg[j])
            && self.window.is_none_or(|w| (self.pos[i].saturating_sub(self.pos[j]) as usize) < w)
    }
}

/// Softmax of row `i` over the keys it may see; every other entry becomes 0.
fn masked_softmax_row<T: Real>(row: &mut [T], seen: &Visibility, i: usize) {
    let visible = |j: usize| seen.sees(i, j);
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
    for (j, x) in row.iter_mut().enumerate() {
        *x = if visible(j) { *x - max } else { T::neg_infinity() };
    }
    T::exp_in_place(row);
    let sum = row.iter().fold(T::zero(), |s, &x| s + x);
    let inv = T::one() / sum;
    row.iter_mut().for_each(|x| *x = *x * inv);
}

/// Backward of [`attention_forward`]: writes `dq`, `dk`, `dv` (not accumulated).
/// `scratch` holds `[batch × seq × seq]` elements.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    scratch: &mut [T],
    dout: &[T],
    probs: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    s: AttnShape,
) {
    let (t, d, qw, kw) = (s.seq, s.head_dim, s.q_width(), s.kv_width());
    let scale = T::from_f64(s.scale);
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
            // Per block of queries, over the keys it can see (as in the forward).
            for (i0, n) in query_blocks(t) {
                let len = i0 + n;
                let (p_blk, ds_blk, do_blk) = (&p[i0 * t..], &mut ds[i0 * t..], &do_b[i0 * qw + h * d..]);
                // dP = dO·Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)).
                crate::gemm::gemm_strided_scaled(
                    false,
                    true,
                    n,
                    len,
                    d,
                    T::one(),
                    do_blk,
                    qw,
                    &v_b[kvh * d..],
                    kw,
                    T::zero(),
                    ds_blk,
                    t,
                );
                for i in 0..n {
                    let (pr, dr) = (&p_blk[i * t..i * t + len], &mut ds_blk[i * t..i * t + len]);
                    let dot: T = pr.iter().zip(dr.iter()).map(|(&a, &b)| a * b).sum();
                    dr.iter_mut().zip(pr).for_each(|(g, &pv)| *g = pv * (*g - dot));
                }
                crate::gemm::gemm_strided_scaled(
                    false,
                    false,
                    n,
                    d,
                    len,
                    scale,
                    ds_blk,
                    t,
                    &k_b[kvh * d..],
                    kw,
                    T::zero(),
                    &mut dq_b[i0 * qw + h * d..],
                    qw,
                );
                crate::gemm::gemm_strided_scaled(
                    true,
                    false,
                    len,
                    d,
                    n,
                    scale,
                    ds_blk,
                    t,
                    &q_b[i0 * qw + h * d..],
                    qw,
                    T::one(),
                    &mut dk_b[kvh * d..],
                    kw,
                );
                crate::gemm::gemm_strided_scaled(
                    true,
                    false,
                    len,
                    d,
                    n,
                    T::one(),
                    p_blk,
                    t,
                    do_blk,
                    qw,
                    T::one(),
                    &mut dv_b[kvh * d..],
                    kw,
                );
            }
        }
    });
}

/// Cache layout of a cached-attention call: `slots` sequences of up to `capacity` tokens.
#[derive(Clone, Copy, Debug)]
pub struct CacheShape {
    /// Tokens one cache slot can hold.
    pub capacity: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads, as stored in the cache.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The factor on `q·kᵀ` (see [`AttnShape::scale`]).
    pub scale: f64,
    /// Keys at least this many positions before a query are hidden (see [`AttnShape::window`]).
    pub window: Option<usize>,
}

/// One sequence's share of a cached-attention call: its `new` query tokens, packed in `q` from
/// row `at`, belong to cache slot `slot`, which holds `past` earlier tokens followed by the new
/// tokens' own keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedSpan {
    /// The cache slot of this sequence.
    pub slot: usize,
    /// First row of this span's queries in `q`.
    pub at: usize,
    /// Query tokens of this call.
    pub new: usize,
    /// Tokens already in the slot before this call.
    pub past: usize,
}

/// Queries per block: a block computes scores only for the keys it can see (causal). In cached
/// attention the blocks are also the tasks spread over the threads.
const QUERY_BLOCK: usize = 64;

/// The tasks of a cached-attention call: (span, head, first query, queries), each block seeing
/// keys `0..past + first + queries`.
fn cached_tasks(spans: &[CachedSpan], heads: usize) -> impl Iterator<Item = (CachedSpan, usize, usize, usize)> + '_ {
    spans.iter().flat_map(move |&sp| {
        (0..heads)
            .flat_map(move |h| (0..sp.new).step_by(QUERY_BLOCK).map(move |i| (sp, h, i, QUERY_BLOCK.min(sp.new - i))))
    })
}

/// Elements of the `scores` scratch that [`attention_cached`] needs for `spans`.
pub fn cached_scores_len(spans: &[CachedSpan], heads: usize) -> usize {
    cached_tasks(spans, heads).map(|(sp, _, i, n)| n * (sp.past + i + n)).sum()
}

/// Attention for incremental decoding: `q` is `[tokens × heads·d]` (the spans' new tokens,
/// packed), the caches `[slots × kv_heads × capacity × d]`: each (slot, KV head) is one contiguous
/// run of rows, which decoding streams from memory. Query `i` of a span sees its slot's
/// cache rows `0..=past + i` (the last `window` of them with a sliding window). Every (span, head, block of queries) is its own task, so one long
/// prompt and many one-token rows both spread over the threads; a one-token span's heads that
/// share a KV head are one task ([`attend_one_token`]), which reads each cached row once for all
/// of them.
pub fn attention_cached<T: Real>(
    out: &mut [T],
    scores: &mut [T],
    q: &[T],
    k_cache: &[T],
    v_cache: &[T],
    spans: &[CachedSpan],
    s: CacheShape,
) {
    let (d, qw) = (s.head_dim, s.heads * s.head_dim);
    let group = s.heads / s.kv_heads;
    let scale = T::from_f64(s.scale);
    // The first cache row a query at position `p` sees.
    let first_seen = |p: usize| s.window.map_or(0, |w| (p + 1).saturating_sub(w));
    assert!(scores.len() >= cached_scores_len(spans, s.heads), "scores scratch too small");
    assert!(spans.iter().all(|sp| sp.new > 0 && (sp.at + sp.new) * qw <= out.len() && sp.past + sp.new <= s.capacity));
    let mut tasks = Vec::new();
    let mut rest = scores;
    for (sp, h, first, n) in cached_tasks(spans, s.heads) {
        if sp.new == 1 && h % group != 0 {
            continue; // taken by its group's first head
        }
        let heads = if sp.new == 1 { group } else { 1 };
        let (sc, tail) = rest.split_at_mut(heads * n * (sp.past + first + n));
        rest = tail;
        tasks.push((sp, h, first, n, sc));
    }
    let out_ptr = &crate::gemm::SendPtr(out.as_mut_ptr());
    tasks.into_par_iter().for_each(move |(sp, h, first, n, sc)| {
        let (len, kvh, row) = (sp.past + first + n, h / group, sp.at + first);
        let at = (sp.slot * s.kv_heads + kvh) * s.capacity * d;
        let (k_b, v_b) = (&k_cache[at..], &v_cache[at..]);
        let q_h = &q[row * qw + h * d..];
        if sp.new == 1 {
            // SAFETY: this task writes only its group's heads of its one row.
            let out_g = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(row * qw + h * d), group * d) };
            let keys = OneTokenKeys { k: k_b, v: v_b, stride: d, first: first_seen(len - 1), len, d };
            attend_one_token(out_g, sc, &q_h[..group * d], keys, scale);
            return;
        }
        crate::gemm::gemm_strided_scaled(false, true, n, len, d, scale, q_h, qw, k_b, d, T::zero(), sc, len);
        for i in 0..n {
            let p = sp.past + first + i;
            softmax_span(&mut sc[i * len..(i + 1) * len], first_seen(p), p + 1);
        }
        // SAFETY: this task writes only head h's columns of its block's rows; the other tasks'
        // elements inside this view are never touched by this call.
        let out_h = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(row * qw + h * d), (n - 1) * qw + d) };
        crate::gemm::gemm_strided_scaled(false, false, n, d, len, T::one(), sc, len, v_b, d, T::zero(), out_h, qw);
    });
}
