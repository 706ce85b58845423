//! The Llama-family decoder: explicit forward and backward over flat buffers.
//!
//! One `Transformer` serves llama, mistral, qwen2 (q/k/v bias) and qwen3 (per-head RMSNorm on q
//! and k); the config switches the differences. A [`Workspace`] holds every activation for one
//! (batch, seq) shape and is allocated once; the step loop allocates nothing large.

use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::lora::{LoraAdapter, Module};
use crate::params::{LayerRanges, ParamLayout, TensorSpec};
use anyhow::{ensure, Result};
use keel_kernels::attention::{attention_backward, attention_forward, AttnShape};
use keel_kernels::cross_entropy::{cross_entropy_backward, cross_entropy_forward, IGNORE};
use keel_kernels::embedding::{embedding_backward, embedding_forward};
use keel_kernels::gemm::gemm_strided_scaled;
use keel_kernels::linear::{linear_backward, linear_forward};
use keel_kernels::lora::{lora_backward, lora_forward};
use keel_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use keel_kernels::rope::RopeTable;
use keel_kernels::swiglu::{swiglu_backward, swiglu_forward};
use rayon::prelude::*;

pub struct Transformer {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// Every parameter, laid out by `layout`.
    pub params: Vec<f32>,
    /// With an adapter, only its parameters train: the base gets no gradients at all.
    pub lora: Option<LoraAdapter>,
}

/// What one layer's backward needs from its forward.
struct LayerActs {
    xn1: Vec<f32>,
    rstd1: Vec<f32>,
    /// q and k before their per-head norm (qwen3 only), with the norms' 1/rms.
    q_pre: Vec<f32>,
    k_pre: Vec<f32>,
    q_rstd: Vec<f32>,
    k_rstd: Vec<f32>,
    /// q and k after RoPE, and v.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    att: Vec<f32>,
    x_mid: Vec<f32>,
    xn2: Vec<f32>,
    rstd2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    /// LoRA: each adapted projection's `x·Aᵀ`, and the dropout-masked input (sized on use).
    lora_u: [Vec<f32>; 7],
    lora_x: Vec<f32>,
}

impl LayerActs {
    /// Element counts of every buffer for a shape, in the order of [`LayerActs::buffers`].
    fn sizes(c: &ModelConfig, s: AttnShape) -> [usize; 17] {
        let n = s.batch * s.seq;
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let qk = usize::from(c.arch.qk_norm());
        [
            n * h,
            n,
            qk * n * qw,
            qk * n * kw,
            qk * n * c.num_heads,
            qk * n * c.num_kv_heads,
            n * qw,
            n * kw,
            n * kw,
            s.probs_len(),
            n * qw,
            n * h,
            n * h,
            n,
            n * f,
            n * f,
            n * f,
        ]
    }

    fn buffers(&mut self) -> [&mut Vec<f32>; 17] {
        [
            &mut self.xn1,
            &mut self.rstd1,
            &mut self.q_pre,
            &mut self.k_pre,
            &mut self.q_rstd,
            &mut self.k_rstd,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.probs,
            &mut self.att,
            &mut self.x_mid,
            &mut self.xn2,
            &mut self.rstd2,
            &mut self.gate,
            &mut self.up,
            &mut self.act,
        ]
    }

    fn with_capacity(c: &ModelConfig, s: AttnShape) -> Self {
        let mut a = LayerActs {
            xn1: vec![],
            rstd1: vec![],
            q_pre: vec![],
            k_pre: vec![],
            q_rstd: vec![],
            k_rstd: vec![],
            q: vec![],
            k: vec![],
            v: vec![],
            probs: vec![],
            att: vec![],
            x_mid: vec![],
            xn2: vec![],
            rstd2: vec![],
            gate: vec![],
            up: vec![],
            act: vec![],
            lora_u: Default::default(),
            lora_x: vec![],
        };
        for (buf, len) in a.buffers().into_iter().zip(Self::sizes(c, s)) {
            *buf = vec![0.0; len];
        }
        a
    }

    fn resize(&mut self, c: &ModelConfig, s: AttnShape) {
        for (buf, len) in self.buffers().into_iter().zip(Self::sizes(c, s)) {
            buf.resize(len, 0.0);
        }
    }
}

/// Activations and backward scratch, allocated once for the largest (batch, seq) shape; smaller
/// batches (length-grouped, or the last one) reuse the same memory.
pub struct Workspace {
    /// The shape of the current batch, and the largest one the buffers were allocated for.
    shape: AttnShape,
    capacity: AttnShape,
    checkpointing: bool,
    rope: RopeTable<f32>,
    /// The input of every layer, and the final hidden state last (`num_layers + 1` entries).
    layer_inputs: Vec<Vec<f32>>,
    /// One per layer, or a single one that is refilled by recomputation under checkpointing.
    acts: Vec<LayerActs>,
    xf: Vec<f32>,
    rstdf: Vec<f32>,
    /// Logits after the forward (one row per position, or per target position with
    /// `logits_at_targets_only`); the gradient of the loss w.r.t. them after the backward.
    pub logits: Vec<f32>,
    /// Compute the LM head only where a position has a target: the same losses and gradients,
    /// without the vocabulary-wide product for prompt and padding positions.
    pub logits_at_targets_only: bool,
    /// With `logits_at_targets_only`: the positions that have targets, and their rows of the
    /// final hidden state and of its gradient.
    selected: Vec<usize>,
    xf_sel: Vec<f32>,
    dxf_sel: Vec<f32>,
    targets_sel: Vec<u32>,
    losses_sel: Vec<f32>,
    lse: Vec<f32>,
    /// Per-position loss `−log p(target)` of the last forward (0 where there is no target).
    pub losses: Vec<f32>,
    dx: Vec<f32>,
    dxn: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    datt: Vec<f32>,
    dk_pre: Vec<f32>,
    dgate: Vec<f32>,
    dup: Vec<f32>,
    dact: Vec<f32>,
    attn_scratch: Vec<f32>,
    /// LoRA backward scratch (sized on use).
    lora_du: Vec<f32>,
    lora_x: Vec<f32>,
    lora_dx: Vec<f32>,
}

impl Workspace {
    /// Allocates everything a step of `batch × seq` tokens needs. With `checkpointing`, only
    /// each layer's input is kept and the layer is recomputed during the backward.
    pub fn new(c: &ModelConfig, batch: usize, seq: usize, checkpointing: bool) -> Result<Self> {
        ensure!(batch > 0 && seq > 0, "batch size and sequence length must be positive");
        ensure!(
            seq <= c.max_position_embeddings,
            "sequences of {seq} tokens are longer than the model's context length of {} tokens (max_position_embeddings); shorten them (data.max_seq_len)",
            c.max_position_embeddings
        );
        crate::limits::ensure_fits(
            Self::bytes_needed(c, batch, seq, checkpointing),
            format_args!("the activations of a batch of {batch} × {seq} tokens (micro-batch size × sequence length)"),
        )?;
        let s = AttnShape { batch, seq, heads: c.num_heads, kv_heads: c.num_kv_heads, head_dim: c.head_dim };
        let kept = if checkpointing { 1 } else { c.num_layers };
        let mut ws = Workspace {
            shape: s,
            capacity: s,
            checkpointing,
            rope: RopeTable::new(&c.rope_inv_freq(), seq),
            layer_inputs: (0..=c.num_layers).map(|_| Vec::new()).collect(),
            acts: (0..kept).map(|_| LayerActs::with_capacity(c, s)).collect(),
            xf: vec![],
            rstdf: vec![],
            logits: vec![],
            logits_at_targets_only: false,
            selected: vec![],
            xf_sel: vec![],
            dxf_sel: vec![],
            targets_sel: vec![],
            losses_sel: vec![],
            lse: vec![],
            losses: vec![],
            dx: vec![],
            dxn: vec![],
            dq: vec![],
            dk: vec![],
            dv: vec![],
            datt: vec![],
            dk_pre: vec![],
            dgate: vec![],
            dup: vec![],
            dact: vec![],
            attn_scratch: vec![],
            lora_du: vec![],
            lora_x: vec![],
            lora_dx: vec![],
        };
        for (buf, len) in ws.buffers().into_iter().zip(Self::sizes(c, s)) {
            *buf = vec![0.0; len];
        }
        for x in &mut ws.layer_inputs {
            *x = vec![0.0; batch * seq * c.hidden_size];
        }
        Ok(ws)
    }

    /// An upper bound of the bytes [`Workspace::new`] allocates, in u128 so that no requested
    /// size overflows it: checked before allocating, a huge sequence length or batch is an error
    /// rather than an abort.
    fn bytes_needed(c: &ModelConfig, batch: usize, seq: usize, checkpointing: bool) -> u128 {
        use crate::limits::product;
        let n = product(&[batch, seq]);
        let (h, f) = (c.hidden_size as u128, c.intermediate_size as u128);
        let (qw, kw) = (product(&[c.num_heads, c.head_dim]), product(&[c.num_kv_heads, c.head_dim]));
        let probs = product(&[batch, c.num_heads, seq, seq]);
        let width = [4 * h, 4 * qw, 5 * kw, 4 * f, 2 * (c.num_heads + c.num_kv_heads) as u128 + 8]
            .into_iter()
            .fold(0u128, u128::saturating_add);
        let per_layer = n.saturating_mul(width).saturating_add(probs.saturating_mul(2));
        let kept = if checkpointing { 1 } else { c.num_layers as u128 };
        let inputs = product(&[c.num_layers + 1]).saturating_mul(n).saturating_mul(h);
        let logits = n.saturating_mul(c.vocab_size as u128 + 1);
        kept.saturating_mul(per_layer)
            .saturating_add(per_layer)
            .saturating_add(inputs)
            .saturating_add(logits)
            .saturating_mul(4)
    }

    /// Element counts of every buffer for a shape, in the order of [`Workspace::buffers`].
    fn sizes(c: &ModelConfig, s: AttnShape) -> [usize; 16] {
        let n = s.batch * s.seq;
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let qk = usize::from(c.arch.qk_norm());
        [
            n * h,
            n,
            n * c.vocab_size,
            n,
            n,
            n * h,
            n * h,
            n * qw,
            n * kw,
            n * kw,
            n * qw,
            qk * n * kw,
            n * f,
            n * f,
            n * f,
            s.scratch_len(),
        ]
    }

    fn buffers(&mut self) -> [&mut Vec<f32>; 16] {
        [
            &mut self.xf,
            &mut self.rstdf,
            &mut self.logits,
            &mut self.lse,
            &mut self.losses,
            &mut self.dx,
            &mut self.dxn,
            &mut self.dq,
            &mut self.dk,
            &mut self.dv,
            &mut self.datt,
            &mut self.dk_pre,
            &mut self.dgate,
            &mut self.dup,
            &mut self.dact,
            &mut self.attn_scratch,
        ]
    }

    pub fn batch(&self) -> usize {
        self.shape.batch
    }

    pub fn seq(&self) -> usize {
        self.shape.seq
    }

    /// The logits of position `pos` after a forward (`None` where they were not computed).
    pub fn logits_row(&self, pos: usize, vocab: usize) -> Option<&[f32]> {
        let row = if self.logits_at_targets_only { self.selected.binary_search(&pos).ok()? } else { pos };
        self.logits.get(row * vocab..(row + 1) * vocab)
    }

    /// Fits the buffers to `batch`'s shape (within the allocated capacity, so without
    /// allocating) and makes sure the RoPE table covers its positions.
    fn prepare(&mut self, c: &ModelConfig, batch: &Batch) -> Result<()> {
        let cap = self.capacity;
        ensure!(
            batch.batch * batch.seq <= cap.batch * cap.seq
                && batch.batch * batch.seq * batch.seq <= cap.batch * cap.seq * cap.seq,
            "a batch of {}×{} tokens does not fit the workspace made for {}×{}",
            batch.batch,
            batch.seq,
            cap.batch,
            cap.seq
        );
        ensure!(
            batch.ids.len() == batch.batch * batch.seq,
            "the batch holds {} ids, not {}×{}",
            batch.ids.len(),
            batch.batch,
            batch.seq
        );
        ensure!(
            batch.seq <= c.max_position_embeddings,
            "a sequence of {} tokens is longer than the model's context length of {} tokens",
            batch.seq,
            c.max_position_embeddings
        );
        // An id past the vocabulary would index past the embedding table.
        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            anyhow::bail!("token id {id} is not in the model's vocabulary of {} tokens", c.vocab_size);
        }
        if let Some(w) = c.sliding_window {
            ensure!(
                batch.seq <= w,
                "sequence length {} exceeds the sliding window {w}; sliding-window attention is not implemented",
                batch.seq
            );
        }
        let s = AttnShape { batch: batch.batch, seq: batch.seq, ..cap };
        if (s.batch, s.seq) != (self.shape.batch, self.shape.seq) {
            self.shape = s;
            for (buf, len) in self.buffers().into_iter().zip(Self::sizes(c, s)) {
                buf.resize(len, 0.0);
            }
            self.acts.iter_mut().for_each(|a| a.resize(c, s));
            self.layer_inputs.iter_mut().for_each(|x| x.resize(s.batch * s.seq * c.hidden_size, 0.0));
        }
        let max_pos = batch.positions.iter().copied().max().unwrap_or(0) as usize;
        if max_pos >= self.rope.len() {
            self.rope = RopeTable::new(&c.rope_inv_freq(), max_pos + 1);
        }
        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            anyhow::bail!("token id {id} is outside the vocabulary of {} tokens", c.vocab_size);
        }
        Ok(())
    }
}

impl Transformer {
    /// A model with all parameters zero (to be filled by loading or initialisation).
    pub fn zeros(config: ModelConfig) -> Self {
        let layout = ParamLayout::new(&config);
        let params = vec![0.0; layout.total];
        Transformer { config, layout, params, lora: None }
    }

    /// The tensors that train: the adapter's with LoRA, else every parameter.
    pub fn trainable_tensors(&self) -> &[TensorSpec] {
        match &self.lora {
            Some(l) => &l.tensors,
            None => &self.layout.tensors,
        }
    }

    pub fn trainable_params(&self) -> &[f32] {
        self.lora.as_ref().map_or(&self.params, |l| &l.params)
    }

    pub fn num_trainable(&self) -> usize {
        self.lora.as_ref().map_or(self.layout.total, |l| l.params.len())
    }

    /// The trainable tensors and their values, borrowed together for an optimizer step.
    pub fn trainable_mut(&mut self) -> (&[TensorSpec], &mut [f32]) {
        match &mut self.lora {
            Some(l) => (&l.tensors, &mut l.params),
            None => (&self.layout.tensors, &mut self.params),
        }
    }

    /// Folds the adapter into the base weights (`W += s·B·A`) and drops it.
    pub fn merge_lora(&mut self) {
        if let Some(l) = self.lora.take() {
            l.merge_into(&self.layout.layers, &mut self.params, &self.config);
        }
    }

    /// Adds the adapter's part of projection `m` of layer `l` to `y` (a no-op without one).
    #[allow(clippy::too_many_arguments)]
    fn lora_forward_into(
        &self,
        l: usize,
        m: Module,
        y: &mut [f32],
        x: &[f32],
        u: &mut Vec<f32>,
        x_drop: &mut Vec<f32>,
    ) {
        let Some(lora) = &self.lora else { return };
        let Some((a, b)) = &lora.slots[l][m as usize] else { return };
        let (n_in, n_out) = m.dims(&self.config);
        let (rank, rows) = (lora.config.rank, x.len() / n_in);
        u.resize(rows * rank, 0.0);
        let input = if lora.config.dropout > 0.0 {
            dropout(x_drop, x, lora, l, m);
            &x_drop[..]
        } else {
            x
        };
        lora_forward(
            y,
            u,
            input,
            &lora.params[a.clone()],
            &lora.params[b.clone()],
            n_in,
            n_out,
            rank,
            lora.config.scale(),
        );
    }

    /// Projections of layer `l` that read the same input (q/k/v, gate/up) and whose adapters can
    /// run as one: every one adapted, no dropout, and their `A` matrices back to back in the
    /// adapter's buffer (as [`LoraAdapter::new`] lays them out). Then `x` is multiplied by the
    /// stacked `A` once instead of once per projection.
    fn lora_group(&self, l: usize, modules: &[Module]) -> Option<LoraGroup> {
        let lora = self.lora.as_ref().filter(|a| a.config.dropout == 0.0)?;
        let slots: Vec<_> = modules.iter().map(|&m| lora.slots[l][m as usize].clone()).collect::<Option<_>>()?;
        let contiguous = slots.windows(2).all(|w| w[0].0.end == w[1].0.start);
        contiguous.then(|| LoraGroup {
            a: slots[0].0.start..slots[slots.len() - 1].0.end,
            members: modules.iter().zip(slots).map(|(&m, (_, b))| (m.dims(&self.config).1, b)).collect(),
            n_in: modules[0].dims(&self.config).0,
        })
    }

    /// `u = x·[A₁; A₂; …]ᵀ` (kept for the backward) and `yᵢ += s · uᵢ·Bᵢᵀ`, `uᵢ` being `u`'s
    /// columns of member `i`.
    fn lora_group_forward(&self, g: &LoraGroup, ys: &mut [&mut [f32]], x: &[f32], u: &mut Vec<f32>) {
        let lora = self.lora.as_ref().expect("a group implies an adapter");
        let (rank, scale, width) = (lora.config.rank, lora.config.scale(), g.members.len() * lora.config.rank);
        let rows = x.len() / g.n_in;
        u.resize(rows * width, 0.0);
        gemm_strided_scaled(
            false,
            true,
            rows,
            width,
            g.n_in,
            1.0,
            x,
            g.n_in,
            &lora.params[g.a.clone()],
            g.n_in,
            0.0,
            u,
            width,
        );
        for (i, ((n_out, b), y)) in g.members.iter().zip(ys.iter_mut()).enumerate() {
            gemm_strided_scaled(
                false,
                true,
                rows,
                *n_out,
                rank,
                scale,
                &u[i * rank..],
                width,
                &lora.params[b.clone()],
                rank,
                1.0,
                y,
                *n_out,
            );
        }
    }

    /// Backward of [`Self::lora_group_forward`]: `dBᵢ += s·dyᵢᵀ·uᵢ`, `du = s·[dy₁·B₁, …]`, then
    /// one product each for `dA += duᵀ·x` and `dx += du·A`.
    #[allow(clippy::too_many_arguments)]
    fn lora_group_backward(
        &self,
        g: &LoraGroup,
        dx: &mut [f32],
        dys: &[&[f32]],
        x: &[f32],
        u: &[f32],
        grads: &mut [f32],
        du: &mut Vec<f32>,
    ) {
        let lora = self.lora.as_ref().expect("a group implies an adapter");
        let (rank, scale, width) = (lora.config.rank, lora.config.scale(), g.members.len() * lora.config.rank);
        let rows = x.len() / g.n_in;
        du.resize(rows * width, 0.0);
        for (i, ((n_out, b), dy)) in g.members.iter().zip(dys).enumerate() {
            gemm_strided_scaled(
                true,
                false,
                *n_out,
                rank,
                rows,
                scale,
                dy,
                *n_out,
                &u[i * rank..],
                width,
                1.0,
                &mut grads[b.clone()],
                rank,
            );
            gemm_strided_scaled(
                false,
                false,
                rows,
                rank,
                *n_out,
                scale,
                dy,
                *n_out,
                &lora.params[b.clone()],
                rank,
                0.0,
                &mut du[i * rank..],
                width,
            );
        }
        gemm_strided_scaled(
            true,
            false,
            width,
            g.n_in,
            rows,
            1.0,
            du,
            width,
            x,
            g.n_in,
            1.0,
            &mut grads[g.a.clone()],
            g.n_in,
        );
        gemm_strided_scaled(
            false,
            false,
            rows,
            g.n_in,
            width,
            1.0,
            du,
            width,
            &lora.params[g.a.clone()],
            g.n_in,
            1.0,
            dx,
            g.n_in,
        );
    }

    /// Backward of [`Self::lora_forward_into`]: adapter gradients into `grads` (the adapter's
    /// layout) and the input gradient added to `dx`.
    #[allow(clippy::too_many_arguments)]
    fn lora_backward_into(
        &self,
        l: usize,
        m: Module,
        dx: &mut [f32],
        dy: &[f32],
        x: &[f32],
        u: &[f32],
        grads: &mut [f32],
        s: &mut LoraScratch,
    ) {
        let Some(lora) = &self.lora else { return };
        let Some((a, b)) = &lora.slots[l][m as usize] else { return };
        let (n_in, n_out) = m.dims(&self.config);
        let (rank, rows) = (lora.config.rank, x.len() / n_in);
        s.du.resize(rows * rank, 0.0);
        let (lo, hi) = grads.split_at_mut(b.start);
        let (da, db) = (&mut lo[a.clone()], &mut hi[..b.len()]);
        let (pa, pb, scale) = (&lora.params[a.clone()], &lora.params[b.clone()], lora.config.scale());
        if lora.config.dropout > 0.0 {
            // dropout(x)·… : the input gradient passes through the same mask.
            dropout(s.x, x, lora, l, m);
            s.dx.clear();
            s.dx.resize(rows * n_in, 0.0);
            lora_backward(s.dx, da, db, s.du, dy, s.x, u, pa, pb, n_in, n_out, rank, scale);
            dropout(s.x, &s.dx[..], lora, l, m);
            dx.iter_mut().zip(s.x.iter()).for_each(|(d, &g)| *d += g);
        } else {
            lora_backward(dx, da, db, s.du, dy, x, u, pa, pb, n_in, n_out, rank, scale);
        }
    }

    /// The training-from-scratch initialisation transformers uses for Llama: N(0, std) for
    /// every matrix and embedding, 1 for norm gains, 0 for biases.
    pub fn init_random(config: ModelConfig, seed: u64, std: f64) -> Self {
        let mut m = Self::zeros(config);
        let mut rng = crate::rng::Rng::new(seed);
        for t in &m.layout.tensors {
            let p = &mut m.params[t.range.clone()];
            if t.is_matrix() {
                p.iter_mut().for_each(|x| *x = (rng.normal() * std) as f32);
            } else if t.name.ends_with("norm.weight") {
                p.fill(1.0);
            }
        }
        m
    }

    /// Runs the model on `batch`, leaving logits and per-position losses in `ws`; returns the
    /// per-position losses.
    pub fn forward<'w>(&self, ws: &'w mut Workspace, batch: &Batch) -> Result<&'w [f32]> {
        let c = &self.config;
        ws.prepare(c, batch)?;
        let p = &self.params;
        embedding_forward(&mut ws.layer_inputs[0], &p[self.layout.embed.clone()], &batch.ids, c.hidden_size);
        for l in 0..c.num_layers {
            let (inputs, outputs) = ws.layer_inputs.split_at_mut(l + 1);
            let acts = &mut ws.acts[if ws.checkpointing { 0 } else { l }];
            self.layer_forward(l, acts, &ws.rope, ws.shape, batch, &inputs[l], &mut outputs[0]);
        }
        rmsnorm_forward(
            &mut ws.xf,
            &mut ws.rstdf,
            &ws.layer_inputs[c.num_layers],
            &p[self.layout.final_norm.clone()],
            c.rms_norm_eps,
        );
        let (h, v) = (c.hidden_size, c.vocab_size);
        if ws.logits_at_targets_only {
            ws.selected.clear();
            ws.selected.extend((0..batch.targets.len()).filter(|&i| batch.targets[i] != IGNORE));
            let m = ws.selected.len();
            ws.xf_sel.resize(m * h, 0.0);
            ws.targets_sel.clear();
            for (k, &i) in ws.selected.iter().enumerate() {
                ws.xf_sel[k * h..(k + 1) * h].copy_from_slice(&ws.xf[i * h..(i + 1) * h]);
                ws.targets_sel.push(batch.targets[i]);
            }
            ws.logits.resize(m * v, 0.0);
            linear_forward(&mut ws.logits, &ws.xf_sel, &p[self.layout.head()], None, h, v);
            ws.losses_sel.resize(m, 0.0);
            cross_entropy_forward(&mut ws.losses_sel, &mut ws.lse[..m], &ws.logits, &ws.targets_sel);
            ws.losses.fill(0.0);
            for (k, &i) in ws.selected.iter().enumerate() {
                ws.losses[i] = ws.losses_sel[k];
            }
        } else {
            ws.logits.resize(batch.targets.len() * v, 0.0);
            linear_forward(&mut ws.logits, &ws.xf, &p[self.layout.head()], None, h, v);
            cross_entropy_forward(&mut ws.losses, &mut ws.lse, &ws.logits, &batch.targets);
        }
        Ok(&ws.losses)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: usize,
        a: &mut LayerActs,
        rope: &RopeTable<f32>,
        s: AttnShape,
        batch: &Batch,
        x: &[f32],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let (p, r) = (&self.params, &self.layout.layers[l]);
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let opt = |range: &Option<std::ops::Range<usize>>| range.clone().map(|r| &p[r]);
        let [uq, uk, uv, uo, ug, uu, ud] = &mut a.lora_u;
        // Attention block.
        rmsnorm_forward(&mut a.xn1, &mut a.rstd1, x, &p[r.attn_norm.clone()], c.rms_norm_eps);
        {
            let (q, k) = if c.arch.qk_norm() { (&mut a.q_pre, &mut a.k_pre) } else { (&mut a.q, &mut a.k) };
            linear_forward(q, &a.xn1, &p[r.q.clone()], opt(&r.q_bias), h, qw);
            linear_forward(k, &a.xn1, &p[r.k.clone()], opt(&r.k_bias), h, kw);
            linear_forward(&mut a.v, &a.xn1, &p[r.v.clone()], opt(&r.v_bias), h, kw);
            if let Some(group) = self.lora_group(l, &[Module::Q, Module::K, Module::V]) {
                self.lora_group_forward(&group, &mut [&mut q[..], &mut k[..], &mut a.v[..]], &a.xn1, uq);
            } else {
                self.lora_forward_into(l, Module::Q, q, &a.xn1, uq, &mut a.lora_x);
                self.lora_forward_into(l, Module::K, k, &a.xn1, uk, &mut a.lora_x);
                self.lora_forward_into(l, Module::V, &mut a.v, &a.xn1, uv, &mut a.lora_x);
            }
        }
        if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
            rmsnorm_forward(&mut a.q, &mut a.q_rstd, &a.q_pre, &p[qn.clone()], c.rms_norm_eps);
            rmsnorm_forward(&mut a.k, &mut a.k_rstd, &a.k_pre, &p[kn.clone()], c.rms_norm_eps);
        }
        rope.apply(&mut a.q, &batch.positions, c.num_heads, false);
        rope.apply(&mut a.k, &batch.positions, c.num_kv_heads, false);
        attention_forward(&mut a.att, &mut a.probs, &a.q, &a.k, &a.v, &batch.segments, s);
        linear_forward(&mut a.x_mid, &a.att, &p[r.o.clone()], None, qw, h);
        self.lora_forward_into(l, Module::O, &mut a.x_mid, &a.att, uo, &mut a.lora_x);
        add_into(&mut a.x_mid, x);
        // MLP block.
        rmsnorm_forward(&mut a.xn2, &mut a.rstd2, &a.x_mid, &p[r.mlp_norm.clone()], c.rms_norm_eps);
        linear_forward(&mut a.gate, &a.xn2, &p[r.gate.clone()], None, h, f);
        linear_forward(&mut a.up, &a.xn2, &p[r.up.clone()], None, h, f);
        if let Some(group) = self.lora_group(l, &[Module::Gate, Module::Up]) {
            self.lora_group_forward(&group, &mut [&mut a.gate[..], &mut a.up[..]], &a.xn2, ug);
        } else {
            self.lora_forward_into(l, Module::Gate, &mut a.gate, &a.xn2, ug, &mut a.lora_x);
            self.lora_forward_into(l, Module::Up, &mut a.up, &a.xn2, uu, &mut a.lora_x);
        }
        swiglu_forward(&mut a.act, &a.gate, &a.up);
        linear_forward(out, &a.act, &p[r.down.clone()], None, f, h);
        self.lora_forward_into(l, Module::Down, out, &a.act, ud, &mut a.lora_x);
        add_into(out, &a.x_mid);
    }

    /// Backpropagates `Σ weights[t] · losses[t]` from the last [`forward`](Self::forward) on
    /// the same batch, adding the gradient of every trainable parameter into `grads` (laid out
    /// as [`Self::trainable_tensors`]: the whole model, or only the LoRA adapter, in which case
    /// no weight gradient of the frozen base is computed).
    pub fn backward(&self, ws: &mut Workspace, batch: &Batch, weights: &[f32], grads: &mut [f32]) -> Result<()> {
        let c = &self.config;
        ensure!(weights.len() == batch.targets.len(), "one loss weight per position is needed");
        ensure!(grads.len() == self.num_trainable(), "the gradient buffer does not match the trainable parameters");
        let p = &self.params;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut g = GradSink { grads, frozen_base: self.lora.is_some() };
        let head = self.layout.head();
        if ws.logits_at_targets_only {
            let m = ws.selected.len();
            let w_sel: Vec<f32> = ws.selected.iter().map(|&i| weights[i]).collect();
            cross_entropy_backward(&mut ws.logits, &ws.lse[..m], &ws.targets_sel, &w_sel);
            ws.dxf_sel.resize(m * h, 0.0);
            linear_backward(Some(&mut ws.dxf_sel), false, g.base(&head), None, &ws.logits, &ws.xf_sel, &p[head], h, v);
            ws.dxn.fill(0.0);
            for (k, &i) in ws.selected.iter().enumerate() {
                ws.dxn[i * h..(i + 1) * h].copy_from_slice(&ws.dxf_sel[k * h..(k + 1) * h]);
            }
        } else {
            cross_entropy_backward(&mut ws.logits, &ws.lse, &batch.targets, weights);
            linear_backward(Some(&mut ws.dxn), false, g.base(&head), None, &ws.logits, &ws.xf, &p[head], h, v);
        }
        ws.dx.fill(0.0);
        let fnorm = self.layout.final_norm.clone();
        rmsnorm_backward(&mut ws.dx, g.base(&fnorm), &ws.dxn, &ws.layer_inputs[c.num_layers], &p[fnorm], &ws.rstdf);
        for l in (0..c.num_layers).rev() {
            let idx = if ws.checkpointing {
                // Recompute this layer's activations from its kept input; the output is discarded
                // into dxn, which is free at this point.
                self.layer_forward(l, &mut ws.acts[0], &ws.rope, ws.shape, batch, &ws.layer_inputs[l], &mut ws.dxn);
                0
            } else {
                l
            };
            self.layer_backward(l, idx, ws, batch, &mut g);
        }
        if let Some(embed) = g.base(&self.layout.embed) {
            embedding_backward(embed, &ws.dx, &batch.ids, h);
        }
        Ok(())
    }

    /// Turns `ws.dx` from the gradient w.r.t. layer `l`'s output into the gradient w.r.t. its input.
    fn layer_backward(&self, l: usize, idx: usize, ws: &mut Workspace, batch: &Batch, g: &mut GradSink) {
        let c = &self.config;
        let (p, r): (&[f32], &LayerRanges) = (&self.params, &self.layout.layers[l]);
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let a = &ws.acts[idx];
        let x = &ws.layer_inputs[l];
        let mut ls = LoraScratch { du: &mut ws.lora_du, x: &mut ws.lora_x, dx: &mut ws.lora_dx };
        // MLP block: out = x_mid + down(swiglu(gate(xn2), up(xn2))).
        linear_backward(Some(&mut ws.dact), false, g.base(&r.down), None, &ws.dx, &a.act, &p[r.down.clone()], f, h);
        self.lora_backward_into(
            l,
            Module::Down,
            &mut ws.dact,
            &ws.dx,
            &a.act,
            &a.lora_u[Module::Down as usize],
            g.grads,
            &mut ls,
        );
        swiglu_backward(&mut ws.dgate, &mut ws.dup, &ws.dact, &a.gate, &a.up);
        linear_backward(Some(&mut ws.dxn), false, g.base(&r.gate), None, &ws.dgate, &a.xn2, &p[r.gate.clone()], h, f);
        linear_backward(Some(&mut ws.dxn), true, g.base(&r.up), None, &ws.dup, &a.xn2, &p[r.up.clone()], h, f);
        if let Some(group) = self.lora_group(l, &[Module::Gate, Module::Up]) {
            let u = &a.lora_u[Module::Gate as usize];
            self.lora_group_backward(&group, &mut ws.dxn, &[&ws.dgate, &ws.dup], &a.xn2, u, g.grads, ls.du);
        } else {
            self.lora_backward_into(
                l,
                Module::Gate,
                &mut ws.dxn,
                &ws.dgate,
                &a.xn2,
                &a.lora_u[Module::Gate as usize],
                g.grads,
                &mut ls,
            );
            self.lora_backward_into(
                l,
                Module::Up,
                &mut ws.dxn,
                &ws.dup,
                &a.xn2,
                &a.lora_u[Module::Up as usize],
                g.grads,
                &mut ls,
            );
        }
        rmsnorm_backward(&mut ws.dx, g.base(&r.mlp_norm), &ws.dxn, &a.x_mid, &p[r.mlp_norm.clone()], &a.rstd2);
        // Attention block: x_mid = x + o(attention(rope(q), rope(k), v)).
        linear_backward(Some(&mut ws.datt), false, g.base(&r.o), None, &ws.dx, &a.att, &p[r.o.clone()], qw, h);
        self.lora_backward_into(
            l,
            Module::O,
            &mut ws.datt,
            &ws.dx,
            &a.att,
            &a.lora_u[Module::O as usize],
            g.grads,
            &mut ls,
        );
        attention_backward(
            &mut ws.dq,
            &mut ws.dk,
            &mut ws.dv,
            &mut ws.attn_scratch,
            &ws.datt,
            &a.probs,
            &a.q,
            &a.k,
            &a.v,
            ws.shape,
        );
        ws.rope.apply(&mut ws.dq, &batch.positions, c.num_heads, true);
        ws.rope.apply(&mut ws.dk, &batch.positions, c.num_kv_heads, true);
        // With per-head q/k norms, the projections' outputs are q_pre/k_pre: take the gradient
        // through the norms (into datt, free now, and dk_pre).
        let (dq, dk): (&[f32], &[f32]) = if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
            ws.datt.fill(0.0);
            ws.dk_pre.fill(0.0);
            rmsnorm_backward(&mut ws.datt, g.base(qn), &ws.dq, &a.q_pre, &p[qn.clone()], &a.q_rstd);
            rmsnorm_backward(&mut ws.dk_pre, g.base(kn), &ws.dk, &a.k_pre, &p[kn.clone()], &a.k_rstd);
            (&ws.datt, &ws.dk_pre)
        } else {
            (&ws.dq, &ws.dk)
        };
        linear_backward_into(g, &mut ws.dxn, false, r.q.clone(), r.q_bias.clone(), dq, &a.xn1, p, h, qw);
        linear_backward_into(g, &mut ws.dxn, true, r.k.clone(), r.k_bias.clone(), dk, &a.xn1, p, h, kw);
        linear_backward_into(g, &mut ws.dxn, true, r.v.clone(), r.v_bias.clone(), &ws.dv, &a.xn1, p, h, kw);
        if let Some(group) = self.lora_group(l, &[Module::Q, Module::K, Module::V]) {
            let u = &a.lora_u[Module::Q as usize];
            self.lora_group_backward(&group, &mut ws.dxn, &[dq, dk, &ws.dv], &a.xn1, u, g.grads, ls.du);
        } else {
            self.lora_backward_into(
                l,
                Module::Q,
                &mut ws.dxn,
                dq,
                &a.xn1,
                &a.lora_u[Module::Q as usize],
                g.grads,
                &mut ls,
            );
            self.lora_backward_into(
                l,
                Module::K,
                &mut ws.dxn,
                dk,
                &a.xn1,
                &a.lora_u[Module::K as usize],
                g.grads,
                &mut ls,
            );
            self.lora_backward_into(
                l,
                Module::V,
                &mut ws.dxn,
                &ws.dv,
                &a.xn1,
                &a.lora_u[Module::V as usize],
                g.grads,
                &mut ls,
            );
        }
        rmsnorm_backward(&mut ws.dx, g.base(&r.attn_norm), &ws.dxn, x, &p[r.attn_norm.clone()], &a.rstd1);
    }
}

/// Where the backward writes weight gradients: the base model's, unless it is frozen under LoRA
/// (then `grads` holds the adapter's and base weight gradients are skipped).
struct GradSink<'g> {
    grads: &'g mut [f32],
    frozen_base: bool,
}

impl GradSink<'_> {
    fn base(&mut self, range: &std::ops::Range<usize>) -> Option<&mut [f32]> {
        (!self.frozen_base).then(|| &mut self.grads[range.clone()])
    }
}

/// Adapted projections that share an input: their stacked `A` (one range of the adapter's
/// buffer), and per member its output width and `B` range.
struct LoraGroup {
    a: std::ops::Range<usize>,
    members: Vec<(usize, std::ops::Range<usize>)>,
    n_in: usize,
}

/// Scratch for the LoRA backward, borrowed from the workspace.
struct LoraScratch<'w> {
    du: &'w mut Vec<f32>,
    x: &'w mut Vec<f32>,
    dx: &'w mut Vec<f32>,
}

/// `out = x ⊙ mask / keep` with a mask drawn from a hash of (dropout key, layer, module, index):
/// the backward regenerates the same mask instead of storing it.
fn dropout(out: &mut Vec<f32>, x: &[f32], lora: &LoraAdapter, l: usize, m: Module) {
    let keep = 1.0 - lora.config.dropout;
    let inv = (1.0 / keep) as f32;
    let base = lora.dropout_key ^ ((l as u64) << 48) ^ ((m as u64) << 40);
    out.resize(x.len(), 0.0);
    out.par_iter_mut().zip(x.par_iter()).enumerate().for_each(|(i, (o, &v))| {
        let mut z = base.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
        *o = if u < keep { v * inv } else { 0.0 };
    });
}

/// [`linear_backward`] for a projection with an optional bias; the layout puts each bias right
/// after its weight, so both gradients come from one split of the buffer.
#[allow(clippy::too_many_arguments)]
fn linear_backward_into(
    g: &mut GradSink,
    dx: &mut [f32],
    accumulate_dx: bool,
    w: std::ops::Range<usize>,
    b: Option<std::ops::Range<usize>>,
    dy: &[f32],
    x: &[f32],
    p: &[f32],
    n_in: usize,
    n_out: usize,
) {
    let span = w.start..b.as_ref().map_or(w.end, |b| b.end);
    match g.base(&span) {
        Some(grads) => {
            let (gw, gb) = grads.split_at_mut(w.len());
            let gb = (!gb.is_empty()).then_some(gb);
            linear_backward(Some(dx), accumulate_dx, Some(gw), gb, dy, x, &p[w], n_in, n_out);
        }
        None => linear_backward(Some(dx), accumulate_dx, None, None, dy, x, &p[w], n_in, n_out),
    }
}

pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(4096)
        .zip(src.par_chunks(4096))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s));
}
