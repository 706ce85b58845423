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
//! never need it in f32. A model rounded to 16 bits (`Transformer::storage`) is packed in 16 bits
//! and every call of up to [`PACKED_MAX_ROWS`] rows reads that copy, one-row steps too: decoding
//! streams every weight once per step, and this machine's memory bandwidth bounds it.

use crate::block::{project, Attend, BlockActs, LayerRopes, PackedLayer};
use crate::transformer::Transformer;
use anyhow::{ensure, Result};
use keel_kernels::attention::{attention_cached, cached_scores_len, CacheShape, CachedSpan};
use keel_kernels::embedding::embedding_forward;
use keel_kernels::packed::PackedLinear;
use keel_kernels::rmsnorm::rmsnorm_forward;

/// Decoding state for up to `slots` sequences.
pub struct Decoder<'m> {
    model: &'m Transformer,
    /// The projections and LM head packed for `x·Wᵀ`; made on the first call of
    /// 2..=[`PACKED_MAX_ROWS`] rows to a decoder of several slots.
    packed: Option<PackedModel>,
    slots: usize,
    capacity: usize,
    /// Per layer, `[slots × kv_heads × capacity × head_dim]`.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    /// Tokens cached per slot.
    lens: Vec<usize>,
    ropes: LayerRopes,
    scratch: Scratch,
    /// Next-token logits of each slot fed by the latest call, in feeding order, `[fed × vocab]`.
    logits: Vec<f32>,
}

/// Calls of up to this many rows (and more than one) use the packed weights: every decoding step
/// of up to 256 slots, and prompts this short. Longer prompts go to OpenBLAS, whose repacking is
/// amortized there (measured: packed 1.1× faster at 256 rows, even at 512; BENCHMARKS.md).
pub const PACKED_MAX_ROWS: usize = 256;

/// Every weight a decoding step multiplies by, packed.
struct PackedModel {
    layers: Vec<PackedLayer>,
    head: PackedLinear,
}

impl PackedModel {
    fn pack(model: &Transformer) -> PackedModel {
        let storage = model.storage;
        let c = &model.config;
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let p = &model.params;
        let pack = |r: &std::ops::Range<usize>, n_in, n_out| PackedLinear::pack_as(&p[r.clone()], n_in, n_out, storage);
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

/// Buffers for the tokens of one call, grown on demand (only a prefill grows them).
#[derive(Default)]
struct Scratch {
    /// The block's activations for the call's `n` tokens.
    acts: BlockActs,
    /// `[n × h]` the residual stream into and out of each block.
    x: Vec<f32>,
    out: Vec<f32>,
    /// Cached attention's scores ([`cached_scores_len`]).
    scores: Vec<f32>,
    /// `[fed × h]` each fed slot's last hidden state, normalized, and `[fed]` its 1/rms.
    last: Vec<f32>,
    last_norm: Vec<f32>,
    last_rstd: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

/// Decoding: each fed span appends its keys and values to its slot's cache, then its queries
/// attend to everything the slot holds.
struct CacheAttention<'c> {
    k_cache: &'c mut [Vec<f32>],
    v_cache: &'c mut [Vec<f32>],
    spans: &'c [CachedSpan],
    scores: &'c mut Vec<f32>,
    shape: CacheShape,
}

impl Attend for CacheAttention<'_> {
    fn attend(&mut self, l: usize, window: Option<usize>, a: &mut BlockActs) {
        let CacheShape { kv_heads, head_dim: d, capacity, .. } = self.shape;
        for sp in self.spans {
            for h in 0..kv_heads {
                let at = ((sp.slot * kv_heads + h) * capacity + sp.past) * d;
                for r in 0..sp.new {
                    let new = (sp.at + r) * kv_heads * d + h * d..(sp.at + r) * kv_heads * d + (h + 1) * d;
                    self.k_cache[l][at + r * d..at + (r + 1) * d].copy_from_slice(&a.k[new.clone()]);
                    self.v_cache[l][at + r * d..at + (r + 1) * d].copy_from_slice(&a.v[new]);
                }
            }
        }
        let shape = CacheShape { window, ..self.shape };
        attention_cached(&mut a.att, self.scores, &a.q, &self.k_cache[l], &self.v_cache[l], self.spans, shape);
    }
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
            ropes: LayerRopes::new(c, capacity),
            scratch: Scratch::default(),
            logits: Vec::new(),
        }
    }

    /// Tokens held by `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Tokens each slot can hold, prompt and generated together (the most positions the RoPE table covers).
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
        self.forward_spans(&spans, &tokens);
        for sp in &spans {
            self.lens[sp.slot] += sp.new;
        }
        Ok(&self.logits)
    }

    /// The packed forward of one call: every block over the fed tokens, then the LM head over
    /// each span's last token, into `self.logits` `[spans × vocab]`.
    fn forward_spans(&mut self, spans: &[CachedSpan], tokens: &[u32]) {
        let model = self.model;
        let c = &model.config;
        let (n, h, b) = (tokens.len(), c.hidden_size, spans.len());
        let positions: Vec<u32> = spans.iter().flat_map(|s| (s.past..s.past + s.new).map(|p| p as u32)).collect();
        let s = &mut self.scratch;
        s.acts.fit(c, n, 0);
        for (buf, len) in
            [(&mut s.x, n * h), (&mut s.out, n * h), (&mut s.scores, cached_scores_len(spans, c.num_heads))]
        {
            fit(buf, len);
        }
        let p = &model.params;
        embedding_forward(&mut s.x, &p[model.layout.embed.clone()], tokens, h);
        if let Some(scale) = c.embed_scale() {
            crate::transformer::scale_in_place(&mut s.x, scale);
        }
        // In f32, only a decoder of several slots has decoding steps of several rows; a one-slot
        // decoder's short prompt is not worth a copy of the weights, and GEMV serves one row. In
        // 16 bits, the packed copy is what halves the bytes, so every short call uses it.
        let half = model.storage != keel_kernels::packed::Storage::F32;
        let min_rows = if half { 1 } else { 2 };
        let few_rows = |rows: usize| (min_rows..=PACKED_MAX_ROWS).contains(&rows);
        if self.packed.is_none() && (self.slots > 1 || half) && few_rows(n) {
            self.packed = Some(PackedModel::pack(model));
        }
        let packed = self.packed.as_ref().filter(|_| few_rows(n));
        let shape = CacheShape {
            capacity: self.capacity,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale(),
            window: None,
        };
        let mut attention = CacheAttention {
            k_cache: &mut self.k_cache,
            v_cache: &mut self.v_cache,
            spans,
            scores: &mut s.scores,
            shape,
        };
        for l in 0..c.num_layers {
            let w = packed.map(|pm| &pm.layers[l]);
            model.block_forward(l, &mut s.acts, &s.x, &mut s.out, &positions, &self.ropes, w, &mut attention);
            std::mem::swap(&mut s.x, &mut s.out);
        }
        // Only each span's last token needs logits.
        fit(&mut s.last, b * h);
        for (row, sp) in spans.iter().enumerate() {
            let src = (sp.at + sp.new - 1) * h;
            s.last[row * h..(row + 1) * h].copy_from_slice(&s.x[src..src + h]);
        }
        fit(&mut s.last_norm, b * h);
        fit(&mut s.last_rstd, b);
        let final_norm = &p[model.layout.final_norm.clone()];
        let off = c.arch.norm_offset();
        rmsnorm_forward(&mut s.last_norm, &mut s.last_rstd, &s.last, final_norm, off, c.rms_norm_eps);
        fit(&mut self.logits, b * c.vocab_size);
        let head = self.packed.as_ref().filter(|_| few_rows(b)).map(|pm| &pm.head);
        project(&mut self.logits, &s.last_norm, head, &p[model.layout.head()], None, h, c.vocab_size);
    }
}
