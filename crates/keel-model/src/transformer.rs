//! The Llama-family decoder: explicit forward and backward over flat buffers.
//!
//! One `Transformer` serves llama, mistral, qwen2 (q/k/v bias) and qwen3 (per-head RMSNorm on q
//! and k); the config switches the differences. A [`Workspace`] holds every activation for one
//! (batch, seq) shape and is allocated once; the step loop allocates nothing large.

use crate::batch::Batch;
use crate::block::{BatchAttention, BlockActs, BlockGrads, GradSink, LayerRopes};
use crate::config::{Arch, ModelConfig};
use crate::lora::LoraAdapter;
use crate::params::{ParamLayout, TensorSpec};
use anyhow::{ensure, Result};
use keel_kernels::attention::AttnShape;
use keel_kernels::cross_entropy::{cross_entropy_backward, cross_entropy_forward, IGNORE};
use keel_kernels::embedding::{embedding_backward, embedding_forward};
use keel_kernels::linear::{linear_backward, linear_forward};
use keel_kernels::packed::Storage;
use keel_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};

/// A model: config, flat f32 parameters and an optional LoRA adapter.
pub struct Transformer {
    /// The architecture.
    pub config: ModelConfig,
    /// Where each tensor lies in `params`, with its Hugging Face name and shape.
    pub layout: ParamLayout,
    /// Every parameter, laid out by `layout`.
    pub params: Vec<f32>,
    /// With an adapter, only its parameters train: the base gets no gradients at all.
    pub lora: Option<LoraAdapter>,
    /// The precision the weight matrices hold: f32, or 16-bit values after
    /// [`Transformer::round_matrices`]. Decoders store their packed copy in it.
    pub storage: Storage,
}

/// Activations and backward scratch, allocated once for the largest (batch, seq) shape; smaller
/// batches (length-grouped, or the last one) reuse the same memory.
pub struct Workspace {
    /// The shape of the current batch, and the largest one the buffers were allocated for.
    shape: AttnShape,
    capacity: AttnShape,
    checkpointing: bool,
    ropes: LayerRopes,
    /// `[n × h]` the input of every layer, and the final hidden state last (`num_layers + 1`).
    layer_inputs: Vec<Vec<f32>>,
    /// One per layer, or a single one that is refilled by recomputation under checkpointing.
    acts: Vec<BlockActs>,
    /// `[n × h]` the final norm's output and `[n]` its 1/rms.
    xf: Vec<f32>,
    rstdf: Vec<f32>,
    /// `[n × vocab]` logits after the forward (or `[targets × vocab]` with
    /// `logits_at_targets_only`); the gradient of the loss w.r.t. them after the backward. Sized
    /// by the forward, so that a vocabulary-wide buffer for every position (1 GiB for Gemma 3 at
    /// 1,024 tokens) exists only when the head runs at every position.
    pub logits: Vec<f32>,
    /// Compute the LM head only where a position has a target: the same losses and gradients,
    /// without the vocabulary-wide product for prompt and padding positions.
    pub logits_at_targets_only: bool,
    /// With `logits_at_targets_only`: the positions that have targets, and `[targets × h]`
    /// their rows of the final hidden state and of its gradient, their targets and losses.
    selected: Vec<usize>,
    xf_sel: Vec<f32>,
    dxf_sel: Vec<f32>,
    targets_sel: Vec<u32>,
    losses_sel: Vec<f32>,
    /// `[n]` each row's log-sum-exp of the logits.
    lse: Vec<f32>,
    /// `[n]` per-position loss `−log p(target)` of the last forward (0 where there is no target).
    pub losses: Vec<f32>,
    /// The backward's gradients through one block at a time.
    grads: BlockGrads,
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
        let s = AttnShape {
            batch,
            seq,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale(),
            window: None,
        };
        let kept = if checkpointing { 1 } else { c.num_layers };
        let mut ws = Workspace {
            shape: s,
            capacity: s,
            checkpointing,
            ropes: LayerRopes::new(c, seq),
            layer_inputs: (0..=c.num_layers).map(|_| Vec::new()).collect(),
            acts: (0..kept).map(|_| BlockActs::default()).collect(),
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
            grads: BlockGrads::default(),
        };
        ws.fit(c, s);
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

    /// Fits every buffer to shape `s`: allocates on the first call, and within that capacity
    /// (a smaller batch) allocates nothing.
    fn fit(&mut self, c: &ModelConfig, s: AttnShape) {
        let (n, h) = (s.batch * s.seq, c.hidden_size);
        for (buf, len) in [(&mut self.xf, n * h), (&mut self.rstdf, n), (&mut self.lse, n), (&mut self.losses, n)] {
            buf.resize(len, 0.0);
        }
        self.grads.fit(c, s);
        self.acts.iter_mut().for_each(|a| a.fit(c, n, s.probs_len()));
        self.layer_inputs.iter_mut().for_each(|x| x.resize(n * h, 0.0));
    }

    /// Number of sequences in the current batch (at most the allocated capacity).
    pub fn batch(&self) -> usize {
        self.shape.batch
    }

    /// Length in tokens of the current batch's (padded) sequences.
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
        if let (Some(w), Arch::Mistral) = (c.sliding_window, c.arch) {
            ensure!(
                batch.seq <= w,
                "sequence length {} exceeds the sliding window {w}; sliding-window attention is not implemented",
                batch.seq
            );
        }
        let s = AttnShape { batch: batch.batch, seq: batch.seq, ..cap };
        if (s.batch, s.seq) != (self.shape.batch, self.shape.seq) {
            self.shape = s;
            self.fit(c, s);
        }
        let max_pos = batch.positions.iter().copied().max().unwrap_or(0) as usize;
        if max_pos >= self.ropes.len() {
            self.ropes = LayerRopes::new(c, max_pos + 1);
        }
        Ok(())
    }
}

impl Transformer {
    /// A model with all parameters zero (to be filled by loading or initialisation).
    pub fn zeros(config: ModelConfig) -> Self {
        let layout = ParamLayout::new(&config);
        let params = vec![0.0; layout.total];
        Transformer { config, layout, params, lora: None, storage: Storage::F32 }
    }

    /// Rounds every weight matrix (embedding, projections, LM head; not norm gains or biases) to
    /// `storage`, as a checkpoint saved in it would hold them, and makes decoders stream them in
    /// it: half the bytes per decoding step for f16 and bf16. Training and scoring then see the
    /// rounded values too, so every score measures the same model. Rounding is to nearest even;
    /// an f16 overflow (|w| > 65504) is an error naming the tensor.
    pub fn round_matrices(&mut self, storage: Storage) -> Result<()> {
        ensure!(self.lora.is_none(), "merge the LoRA adapter before rounding the weights");
        for t in self.layout.tensors.iter().filter(|t| t.is_matrix()) {
            for (i, w) in self.params[t.range.clone()].iter_mut().enumerate() {
                let r = storage.round(*w);
                ensure!(r.is_finite() || !w.is_finite(), "{} [{i}] = {w} does not fit in {storage:?}", t.name);
                *w = r;
            }
        }
        self.storage = storage;
        Ok(())
    }

    /// The tensors that train: the adapter's with LoRA, else every parameter.
    pub fn trainable_tensors(&self) -> &[TensorSpec] {
        match &self.lora {
            Some(l) => &l.tensors,
            None => &self.layout.tensors,
        }
    }

    /// The values of the trainable tensors: the adapter's with LoRA, else `params`.
    pub fn trainable_params(&self) -> &[f32] {
        self.lora.as_ref().map_or(&self.params, |l| &l.params)
    }

    /// Number of trainable parameters (scalars), the adapter's with LoRA.
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
                // A gain of one: Gemma stores it as 1 + w.
                p.fill(1.0 - m.config.arch.norm_offset());
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
        if let Some(scale) = c.embed_scale() {
            scale_in_place(&mut ws.layer_inputs[0], scale);
        }
        let mut attention = BatchAttention { segments: &batch.segments, positions: &batch.positions, shape: ws.shape };
        for l in 0..c.num_layers {
            let (inputs, outputs) = ws.layer_inputs.split_at_mut(l + 1);
            let acts = &mut ws.acts[if ws.checkpointing { 0 } else { l }];
            self.block_forward(l, acts, &inputs[l], &mut outputs[0], &batch.positions, &ws.ropes, None, &mut attention);
        }
        rmsnorm_forward(
            &mut ws.xf,
            &mut ws.rstdf,
            &ws.layer_inputs[c.num_layers],
            &p[self.layout.final_norm.clone()],
            c.arch.norm_offset(),
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

    /// Backpropagates `Σ coefficients[t] · losses[t]` from the last [`forward`](Self::forward) on
    /// the same batch, adding the gradient of every trainable parameter into `grads` (laid out
    /// as [`Self::trainable_tensors`]: the whole model, or only the LoRA adapter, in which case
    /// no weight gradient of the frozen base is computed).
    pub fn backward(&self, ws: &mut Workspace, batch: &Batch, coefficients: &[f32], grads: &mut [f32]) -> Result<()> {
        let c = &self.config;
        ensure!(coefficients.len() == batch.targets.len(), "one loss coefficient per position is needed");
        ensure!(grads.len() == self.num_trainable(), "the gradient buffer does not match the trainable parameters");
        let p = &self.params;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut g = GradSink { grads, frozen_base: self.lora.is_some() };
        let head = self.layout.head();
        let d = &mut ws.grads;
        if ws.logits_at_targets_only {
            let m = ws.selected.len();
            let c_sel: Vec<f32> = ws.selected.iter().map(|&i| coefficients[i]).collect();
            cross_entropy_backward(&mut ws.logits, &ws.lse[..m], &ws.targets_sel, &c_sel);
            ws.dxf_sel.resize(m * h, 0.0);
            linear_backward(Some(&mut ws.dxf_sel), false, g.base(&head), None, &ws.logits, &ws.xf_sel, &p[head], h, v);
            d.dxn.fill(0.0);
            for (k, &i) in ws.selected.iter().enumerate() {
                d.dxn[i * h..(i + 1) * h].copy_from_slice(&ws.dxf_sel[k * h..(k + 1) * h]);
            }
        } else {
            cross_entropy_backward(&mut ws.logits, &ws.lse, &batch.targets, coefficients);
            linear_backward(Some(&mut d.dxn), false, g.base(&head), None, &ws.logits, &ws.xf, &p[head], h, v);
        }
        d.dx.fill(0.0);
        let fnorm = self.layout.final_norm.clone();
        let (last, off) = (&ws.layer_inputs[c.num_layers], c.arch.norm_offset());
        rmsnorm_backward(&mut d.dx, g.base(&fnorm), &d.dxn, last, &p[fnorm], off, &ws.rstdf);
        let mut attention = BatchAttention { segments: &batch.segments, positions: &batch.positions, shape: ws.shape };
        for l in (0..c.num_layers).rev() {
            let (x, rope) = (&ws.layer_inputs[l], &ws.ropes);
            let idx = if ws.checkpointing {
                // Recompute this layer's activations from its kept input; the output is discarded
                // into dxn, which is free at this point.
                self.block_forward(l, &mut ws.acts[0], x, &mut d.dxn, &batch.positions, rope, None, &mut attention);
                0
            } else {
                l
            };
            self.block_backward(l, &ws.acts[idx], x, d, &batch.positions, rope, ws.shape, &mut g);
        }
        if let Some(embed) = g.base(&self.layout.embed) {
            if let Some(scale) = c.embed_scale() {
                scale_in_place(&mut d.dx, scale);
            }
            embedding_backward(embed, &d.dx, &batch.ids, h);
        }
        Ok(())
    }
}

/// `x *= scale`, elementwise (Gemma's embedding scale, and its gradient).
pub(crate) fn scale_in_place(x: &mut [f32], scale: f32) {
    x.iter_mut().for_each(|v| *v *= scale);
}
