//! Inference with a KV cache on the same `Transformer` weights that training updates.
//!
//! The decoder holds `slots` sequences, each with its own length. One call feeds any set of
//! slots any number of tokens (a new prompt for one, the next token for others), packed into a
//! single forward without padding; a finished slot can be reset and refilled while the others
//! keep decoding (continuous batching).
//!
//! A call of a few rows (one token for each of several sequences) goes through weights packed
//! once (`keel_kernels::packed`): a general GEMM would repack every weight on every such call, at
//! more cost than the product. The packed copy, as large as the layers' weights, is made on the
//! first such call to a decoder of several slots; one-row calls (GEMV) and prompts (OpenBLAS)
//! never need it.

use crate::transformer::Transformer;
use anyhow::{ensure, Result};
use keel_kernels::attention::{attention_cached, cached_scores_len, CacheShape, CachedSpan};
use keel_kernels::embedding::embedding_forward;
use keel_kernels::gemm::gemm;
use keel_kernels::packed::PackedLinear;
use keel_kernels::rmsnorm::rmsnorm_forward;
use keel_kernels::rope::RopeTable;
use keel_kernels::swiglu::swiglu_forward;

/// Decoding state for up to `slots` sequences.
pub struct Decoder<'m> {
    model: &'m Transformer,
    /// The projections and LM head packed for `x·Wᵀ`; made on the first call of
    /// 2..=[`PACKED_MAX_ROWS`] rows to a decoder of several slots.
    packed: Option<PackedModel>,
    slots: usize,
    capacity: usize,
    /// Per layer, `[slots × capacity × kv_heads·head_dim]`.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    /// Tokens cached per slot.
    lens: Vec<usize>,
    rope: RopeTable<f32>,
    scratch: Scratch,
    /// Next-token logits of each slot fed by the latest call, in feeding order, `[fed × vocab]`.
    logits: Vec<f32>,
}

/// Calls of up to this many rows (and more than one) use the packed weights; longer ones are
/// prompts, where OpenBLAS's packing is amortized (and measured faster, BENCHMARKS.md).
const PACKED_MAX_ROWS: usize = 48;

struct PackedLayer {
    q: PackedLinear,
    k: PackedLinear,
    v: PackedLinear,
    o: PackedLinear,
    gate: PackedLinear,
    up: PackedLinear,
    down: PackedLinear,
}

/// Every weight a decoding step multiplies by, packed.
struct PackedModel {
    layers: Vec<PackedLayer>,
    head: PackedLinear,
}

impl PackedModel {
    fn pack(model: &Transformer) -> PackedModel {
        let c = &model.config;
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let p = &model.params;
        let pack = |r: &std::ops::Range<usize>, n_in, n_out| PackedLinear::pack(&p[r.clone()], n_in, n_out);
        let layers = model
            .layout
            .layers
            .iter()
            .map(|r| PackedLayer {
                q: pack(&r.q, h, qw),
                k: pack(&r.k, h, kw),
                v: pack(&r.v, h, kw),
                o: pack(&r.o, qw, h),
                gate: pack(&r.gate, h, f),
                up: pack(&r.up, h, f),
                down: pack(&r.down, f, h),
            })
            .collect();
        PackedModel { layers, head: pack(&model.layout.head(), h, c.vocab_size) }
    }
}

/// `y[rows × n_out] = x·Wᵀ + b`, or `y += x·Wᵀ` for a residual, through the packed weight when
/// the call has one.
#[allow(clippy::too_many_arguments)]
fn project(
    y: &mut [f32],
    x: &[f32],
    packed: Option<&PackedLinear>,
    w: &[f32],
    bias: Option<&[f32]>,
    n_in: usize,
    n_out: usize,
    accumulate: bool,
) {
    match packed {
        Some(pw) => pw.forward(y, x, w, accumulate),
        None => gemm(false, true, x.len() / n_in, n_out, n_in, x, w, if accumulate { 1.0 } else { 0.0 }, y),
    }
    if let Some(b) = bias {
        y.chunks_mut(n_out).for_each(|row| row.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
    }
}

/// Buffers for the tokens of one call, grown on demand (only a prefill grows them).
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    rstd: Vec<f32>,
    q: Vec<f32>,
    q_pre: Vec<f32>,
    k: Vec<f32>,
    k_pre: Vec<f32>,
    v: Vec<f32>,
    head_rstd: Vec<f32>,
    att: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
    last: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

impl<'m> Decoder<'m> {
    /// Room for `slots` sequences of `capacity` tokens (prompt and generated) each.
    pub fn new(model: &'m Transformer, slots: usize, capacity: usize) -> Self {
        let c = &model.config;
        let kw = c.num_kv_heads * c.head_dim;
        Decoder {
            model,
            slots,
            capacity,
            k_cache: (0..c.num_layers).map(|_| vec![0.0; slots * capacity * kw]).collect(),
            v_cache: (0..c.num_layers).map(|_| vec![0.0; slots * capacity * kw]).collect(),
            packed: None,
            lens: vec![0; slots],
            rope: RopeTable::new(&c.rope_inv_freq(), capacity),
            scratch: Scratch::default(),
            logits: Vec::new(),
        }
    }

    /// Tokens held by `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empties `slot` for a new sequence.
    pub fn reset(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }

    /// Starts over with one prompt per slot; returns each slot's next-token logits,
    /// `[slots × vocab]`.
    pub fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<&[f32]> {
        ensure!(prompts.len() == self.slots, "{} prompts for a decoder of {} slots", prompts.len(), self.slots);
        self.lens.fill(0);
        let feeds: Vec<(usize, &[u32])> = prompts.iter().enumerate().map(|(i, p)| (i, p.as_slice())).collect();
        self.feed(&feeds)
    }

    /// Appends one token to every slot; returns the next-token logits, `[slots × vocab]`.
    pub fn step(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        ensure!(tokens.len() == self.slots, "one token per slot is needed");
        let feeds: Vec<(usize, &[u32])> =
            tokens.iter().enumerate().map(|(i, t)| (i, std::slice::from_ref(t))).collect();
        self.feed(&feeds)
    }

    /// Appends `tokens` to each listed slot (each slot at most once) in one forward; returns
    /// the next-token logits of each listed slot, in order, `[feeds × vocab]`.
    pub fn feed(&mut self, feeds: &[(usize, &[u32])]) -> Result<&[f32]> {
        let model = self.model;
        let c = &model.config;
        ensure!(
            model.lora.is_none(),
            "the model carries an unmerged LoRA adapter; merge it (Transformer::merge_lora) before decoding"
        );
        ensure!(!feeds.is_empty(), "nothing to feed");
        let mut spans = Vec::with_capacity(feeds.len());
        let mut tokens = Vec::new();
        for &(slot, ids) in feeds {
            ensure!(slot < self.slots, "slot {slot} of a decoder with {} slots", self.slots);
            ensure!(!ids.is_empty(), "an empty prompt or step for slot {slot}");
            ensure!(spans.iter().all(|s: &CachedSpan| s.slot != slot), "slot {slot} fed twice in one call");
            let past = self.lens[slot];
            ensure!(
                past + ids.len() <= self.capacity,
                "the context of {} tokens is full ({past} held, {} more)",
                self.capacity,
                ids.len()
            );
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
                anyhow::bail!("token id {id} is outside the vocabulary of {} tokens", c.vocab_size);
            }
            spans.push(CachedSpan { slot, at: tokens.len(), new: ids.len(), past });
            tokens.extend_from_slice(ids);
        }
        let n = tokens.len();
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let positions: Vec<u32> = spans.iter().flat_map(|s| (s.past..s.past + s.new).map(|p| p as u32)).collect();
        let s = &mut self.scratch;
        for (buf, len) in [
            (&mut s.x, n * h),
            (&mut s.xn, n * h),
            (&mut s.rstd, n),
            (&mut s.q, n * qw),
            (&mut s.k, n * kw),
            (&mut s.v, n * kw),
            (&mut s.att, n * qw),
            (&mut s.gate, n * f),
            (&mut s.up, n * f),
            (&mut s.act, n * f),
            (&mut s.scores, cached_scores_len(&spans, c.num_heads)),
        ] {
            fit(buf, len);
        }
        if c.arch.qk_norm() {
            fit(&mut s.q_pre, n * qw);
            fit(&mut s.k_pre, n * kw);
            fit(&mut s.head_rstd, n * c.num_heads);
        }
        let p = &model.params;
        let opt = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| &p[r]);
        embedding_forward(&mut s.x, &p[model.layout.embed.clone()], &tokens, h);
        let shape =
            CacheShape { capacity: self.capacity, heads: c.num_heads, kv_heads: c.num_kv_heads, head_dim: c.head_dim };
        let b = spans.len();
        // Only a decoder of several slots has decoding steps of several rows; a one-slot
        // decoder's short prompt is not worth a copy of the weights.
        let few_rows = |rows: usize| (2..=PACKED_MAX_ROWS).contains(&rows);
        if self.packed.is_none() && self.slots > 1 && few_rows(n) {
            self.packed = Some(PackedModel::pack(model));
        }
        let packed = self.packed.as_ref().filter(|_| few_rows(n));
        for (l, r) in model.layout.layers.iter().enumerate() {
            let w = packed.map(|pm| &pm.layers[l]);
            rmsnorm_forward(&mut s.xn, &mut s.rstd, &s.x, &p[r.attn_norm.clone()], c.rms_norm_eps);
            if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
                project(&mut s.q_pre, &s.xn, w.map(|w| &w.q), &p[r.q.clone()], opt(&r.q_bias), h, qw, false);
                project(&mut s.k_pre, &s.xn, w.map(|w| &w.k), &p[r.k.clone()], opt(&r.k_bias), h, kw, false);
                rmsnorm_forward(&mut s.q, &mut s.head_rstd, &s.q_pre, &p[qn.clone()], c.rms_norm_eps);
                rmsnorm_forward(
                    &mut s.k,
                    &mut s.head_rstd[..n * c.num_kv_heads],
                    &s.k_pre,
                    &p[kn.clone()],
                    c.rms_norm_eps,
                );
            } else {
                project(&mut s.q, &s.xn, w.map(|w| &w.q), &p[r.q.clone()], opt(&r.q_bias), h, qw, false);
                project(&mut s.k, &s.xn, w.map(|w| &w.k), &p[r.k.clone()], opt(&r.k_bias), h, kw, false);
            }
            project(&mut s.v, &s.xn, w.map(|w| &w.v), &p[r.v.clone()], opt(&r.v_bias), h, kw, false);
            self.rope.apply(&mut s.q, &positions, c.num_heads, false);
            self.rope.apply(&mut s.k, &positions, c.num_kv_heads, false);
            for sp in &spans {
                let at = (sp.slot * self.capacity + sp.past) * kw;
                self.k_cache[l][at..at + sp.new * kw].copy_from_slice(&s.k[sp.at * kw..(sp.at + sp.new) * kw]);
                self.v_cache[l][at..at + sp.new * kw].copy_from_slice(&s.v[sp.at * kw..(sp.at + sp.new) * kw]);
            }
            attention_cached(&mut s.att, &mut s.scores, &s.q, &self.k_cache[l], &self.v_cache[l], &spans, shape);
            // The residual stream takes the output projections in the same product.
            project(&mut s.x, &s.att, w.map(|w| &w.o), &p[r.o.clone()], None, qw, h, true);
            rmsnorm_forward(&mut s.xn, &mut s.rstd, &s.x, &p[r.mlp_norm.clone()], c.rms_norm_eps);
            project(&mut s.gate, &s.xn, w.map(|w| &w.gate), &p[r.gate.clone()], None, h, f, false);
            project(&mut s.up, &s.xn, w.map(|w| &w.up), &p[r.up.clone()], None, h, f, false);
            swiglu_forward(&mut s.act, &s.gate, &s.up);
            project(&mut s.x, &s.act, w.map(|w| &w.down), &p[r.down.clone()], None, f, h, true);
        }
        // Only each span's last token needs logits.
        fit(&mut s.last, b * h);
        for (row, sp) in spans.iter().enumerate() {
            let src = (sp.at + sp.new - 1) * h;
            s.last[row * h..(row + 1) * h].copy_from_slice(&s.x[src..src + h]);
        }
        rmsnorm_forward(
            &mut s.xn[..b * h],
            &mut s.rstd[..b],
            &s.last,
            &p[model.layout.final_norm.clone()],
            c.rms_norm_eps,
        );
        fit(&mut self.logits, b * c.vocab_size);
        let head = self.packed.as_ref().filter(|_| few_rows(b)).map(|pm| &pm.head);
        project(&mut self.logits, &s.xn[..b * h], head, &p[model.layout.head()], None, h, c.vocab_size, false);
        for sp in &spans {
            self.lens[sp.slot] += sp.new;
        }
        Ok(&self.logits)
    }
}
