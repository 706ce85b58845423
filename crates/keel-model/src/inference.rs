//! Inference with a KV cache: batched prefill of left-padded prompts, then one token per row per
//! step, on the same `Transformer` weights that training updates.

use crate::transformer::{add_into, Transformer};
use anyhow::{ensure, Result};
use keel_kernels::attention::{attention_cached, CachedShape};
use keel_kernels::embedding::embedding_forward;
use keel_kernels::linear::linear_forward;
use keel_kernels::rmsnorm::rmsnorm_forward;
use keel_kernels::rope::RopeTable;
use keel_kernels::swiglu::swiglu_forward;

/// Decoding state for a batch of sequences.
pub struct Decoder<'m> {
    model: &'m Transformer,
    batch: usize,
    capacity: usize,
    /// Per layer, `[batch × capacity × kv_heads·head_dim]`.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    /// Cache rows filled (the same for every row: prompts are left-padded).
    len: usize,
    /// Left-padding rows of each sequence.
    pads: Vec<usize>,
    rope: RopeTable<f32>,
    scratch: Scratch,
    /// Logits of each row's last token after the latest call, `[batch × vocab]`.
    logits: Vec<f32>,
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
    tmp: Vec<f32>,
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
    /// Room for `capacity` tokens (prompt and generated) per sequence.
    pub fn new(model: &'m Transformer, batch: usize, capacity: usize) -> Self {
        let c = &model.config;
        let kw = c.num_kv_heads * c.head_dim;
        Decoder {
            model,
            batch,
            capacity,
            k_cache: (0..c.num_layers).map(|_| vec![0.0; batch * capacity * kw]).collect(),
            v_cache: (0..c.num_layers).map(|_| vec![0.0; batch * capacity * kw]).collect(),
            len: 0,
            pads: vec![0; batch],
            rope: RopeTable::new(&c.rope_inv_freq(), capacity),
            scratch: Scratch::default(),
            logits: vec![0.0; batch * c.vocab_size],
        }
    }

    /// Tokens held per sequence so far, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Starts over with new prompts (one per row), left-padded to the longest; returns each
    /// row's next-token logits, `[batch × vocab]`.
    pub fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<&[f32]> {
        ensure!(self.model.lora.is_none(), "the model carries an unmerged LoRA adapter; merge it (Transformer::merge_lora) before decoding");
        ensure!(prompts.len() == self.batch, "{} prompts for a decoder of batch {}", prompts.len(), self.batch);
        ensure!(prompts.iter().all(|p| !p.is_empty()), "a prompt is empty");
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        ensure!(longest <= self.capacity, "a prompt of {longest} tokens does not fit the context of {}", self.capacity);
        self.len = 0;
        self.pads = prompts.iter().map(|p| longest - p.len()).collect();
        let tokens: Vec<u32> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat(p[0]).take(longest - p.len()).chain(p.iter().copied()))
            .collect();
        self.run(&tokens, longest)?;
        Ok(&self.logits)
    }

    /// Appends one token to every row; returns the next-token logits, `[batch × vocab]`.
    pub fn step(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        ensure!(tokens.len() == self.batch, "one token per row is needed");
        ensure!(self.len < self.capacity, "the context of {} tokens is full", self.capacity);
        self.run(tokens, 1)?;
        Ok(&self.logits)
    }

    /// Runs `new` tokens per row (`tokens` is `[batch × new]`) through the model, appending their
    /// keys and values to the cache.
    fn run(&mut self, tokens: &[u32], new: usize) -> Result<()> {
        let model = self.model;
        let c = &model.config;
        ensure!(self.len + new <= self.capacity, "the context of {} tokens is full", self.capacity);
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            anyhow::bail!("token id {id} is outside the vocabulary of {} tokens", c.vocab_size);
        }
        let (b, past, n) = (self.batch, self.len, self.batch * new);
        let (h, qw, kw, f) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let positions: Vec<u32> =
            (0..n).map(|i| (past + i % new).saturating_sub(self.pads[i / new]) as u32).collect();
        let s = &mut self.scratch;
        for (buf, len) in [
            (&mut s.x, n * h), (&mut s.xn, n * h), (&mut s.rstd, n), (&mut s.q, n * qw), (&mut s.k, n * kw),
            (&mut s.v, n * kw), (&mut s.att, n * qw), (&mut s.tmp, n * h), (&mut s.gate, n * f), (&mut s.up, n * f),
            (&mut s.act, n * f), (&mut s.scores, n * (past + new)),
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
        embedding_forward(&mut s.x, &p[model.layout.embed.clone()], tokens, h);
        let shape = CachedShape {
            batch: b, new, past, capacity: self.capacity, heads: c.num_heads, kv_heads: c.num_kv_heads, head_dim: c.head_dim,
        };
        for (l, r) in model.layout.layers.iter().enumerate() {
            rmsnorm_forward(&mut s.xn, &mut s.rstd, &s.x, &p[r.attn_norm.clone()], c.rms_norm_eps);
            if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
                linear_forward(&mut s.q_pre, &s.xn, &p[r.q.clone()], opt(&r.q_bias), h, qw);
                linear_forward(&mut s.k_pre, &s.xn, &p[r.k.clone()], opt(&r.k_bias), h, kw);
                rmsnorm_forward(&mut s.q, &mut s.head_rstd, &s.q_pre, &p[qn.clone()], c.rms_norm_eps);
                rmsnorm_forward(&mut s.k, &mut s.head_rstd[..n * c.num_kv_heads], &s.k_pre, &p[kn.clone()], c.rms_norm_eps);
            } else {
                linear_forward(&mut s.q, &s.xn, &p[r.q.clone()], opt(&r.q_bias), h, qw);
                linear_forward(&mut s.k, &s.xn, &p[r.k.clone()], opt(&r.k_bias), h, kw);
            }
            linear_forward(&mut s.v, &s.xn, &p[r.v.clone()], opt(&r.v_bias), h, kw);
            self.rope.apply(&mut s.q, &positions, c.num_heads, false);
            self.rope.apply(&mut s.k, &positions, c.num_kv_heads, false);
            for row in 0..b {
                let at = (row * self.capacity + past) * kw;
                self.k_cache[l][at..at + new * kw].copy_from_slice(&s.k[row * new * kw..(row + 1) * new * kw]);
                self.v_cache[l][at..at + new * kw].copy_from_slice(&s.v[row * new * kw..(row + 1) * new * kw]);
            }
            attention_cached(&mut s.att, &mut s.scores, &s.q, &self.k_cache[l], &self.v_cache[l], &self.pads, shape);
            linear_forward(&mut s.tmp, &s.att, &p[r.o.clone()], None, qw, h);
            add_into(&mut s.x, &s.tmp);
            rmsnorm_forward(&mut s.xn, &mut s.rstd, &s.x, &p[r.mlp_norm.clone()], c.rms_norm_eps);
            linear_forward(&mut s.gate, &s.xn, &p[r.gate.clone()], None, h, f);
            linear_forward(&mut s.up, &s.xn, &p[r.up.clone()], None, h, f);
            swiglu_forward(&mut s.act, &s.gate, &s.up);
            linear_forward(&mut s.tmp, &s.act, &p[r.down.clone()], None, f, h);
            add_into(&mut s.x, &s.tmp);
        }
        // Only each row's last token needs logits.
        fit(&mut s.last, b * h);
        for row in 0..b {
            let src = ((row + 1) * new - 1) * h;
            s.last[row * h..(row + 1) * h].copy_from_slice(&s.x[src..src + h]);
        }
        rmsnorm_forward(&mut s.xn[..b * h], &mut s.rstd[..b], &s.last, &p[model.layout.final_norm.clone()], c.rms_norm_eps);
        linear_forward(&mut self.logits, &s.xn[..b * h], &p[model.layout.head()], None, h, c.vocab_size);
        self.len += new;
        Ok(())
    }
}
