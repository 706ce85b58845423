//! One Llama block, forward beside backward: the only copy of it. Training
//! (`Transformer::forward`) and decoding (`Decoder::feed`) both run [`Transformer::block_forward`];
//! they differ only in where attention finds its keys and values ([`Attend`]: a batch's segments,
//! or the KV cache) and in whether a product reads packed weights ([`PackedLayer`]).
//!
//! `x → x_mid = x + o(attention(rope(q), rope(k), v))` with q, k, v projected from
//! `rmsnorm(x)`; then `out = x_mid + down(act(gate(xn2)) ⊙ up(xn2))` with `xn2 = rmsnorm(x_mid)`.
//! Gemma 3 also normalizes each branch before its residual add (`x + rmsnorm(o(…))`,
//! `x_mid + rmsnorm(down(…))`), and its sliding layers attend to a window with their own RoPE.

use crate::config::{LayerKind, ModelConfig};
use crate::lora::{LoraScratch, Module};
use crate::params::LayerRanges;
use crate::transformer::Transformer;
use keel_kernels::attention::{attention_backward, attention_forward, AttnShape};
use keel_kernels::glu::{glu_backward, glu_forward};
use keel_kernels::linear::{linear_backward, linear_forward};
use keel_kernels::packed::PackedLinear;
use keel_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use keel_kernels::rope::RopeTable;
use rayon::prelude::*;

/// What one block's forward leaves behind for `n` tokens (and its backward reads). Widths:
/// `h` hidden, `qw = heads·head_dim`, `kw = kv_heads·head_dim`, `f` intermediate.
#[derive(Default)]
pub(crate) struct BlockActs {
    /// `[n × h]` rmsnorm(x) and `[n]` its 1/rms.
    pub(crate) xn1: Vec<f32>,
    pub(crate) rstd1: Vec<f32>,
    /// `[n × qw]`, `[n × kw]`: q and k before their per-head norm (qwen3 only; else empty),
    /// `[n × heads]`, `[n × kv_heads]` the norms' 1/rms.
    pub(crate) q_pre: Vec<f32>,
    pub(crate) k_pre: Vec<f32>,
    pub(crate) q_rstd: Vec<f32>,
    pub(crate) k_rstd: Vec<f32>,
    /// `[n × qw]` q after RoPE, `[n × kw]` k after RoPE, `[n × kw]` v.
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    /// Attention probabilities, as [`AttnShape::probs_len`] lays them out (training only).
    pub(crate) probs: Vec<f32>,
    /// `[n × qw]` attention output, `[n × h]` the residual stream after attention.
    pub(crate) att: Vec<f32>,
    pub(crate) x_mid: Vec<f32>,
    /// With post-norms (Gemma 3; else empty): `[n × h]` the attention branch's and the MLP
    /// branch's outputs before their norms, and `[n]` each norm's 1/rms.
    pub(crate) attn_out: Vec<f32>,
    pub(crate) attn_out_rstd: Vec<f32>,
    pub(crate) mlp_out: Vec<f32>,
    pub(crate) mlp_out_rstd: Vec<f32>,
    /// `[n × h]` rmsnorm(x_mid) and `[n]` its 1/rms.
    pub(crate) xn2: Vec<f32>,
    pub(crate) rstd2: Vec<f32>,
    /// `[n × f]` each: gate, up, act(gate) ⊙ up.
    pub(crate) gate: Vec<f32>,
    pub(crate) up: Vec<f32>,
    pub(crate) act: Vec<f32>,
    /// LoRA: each adapted projection's `x·Aᵀ` (`[n × rank]`, by `Module`), and the
    /// dropout-masked input; sized on use.
    pub(crate) lora_u: [Vec<f32>; 7],
    pub(crate) lora_x: Vec<f32>,
}

impl BlockActs {
    /// Fits every buffer to `n` tokens and `probs` attention probabilities. Within the
    /// capacity of an earlier, larger fit this allocates nothing.
    pub(crate) fn fit(&mut self, c: &ModelConfig, n: usize, probs: usize) {
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let (qw, kw) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let qk = usize::from(c.arch.qk_norm());
        let post = usize::from(c.arch.post_norms());
        for (buf, len) in [
            (&mut self.xn1, n * h),
            (&mut self.rstd1, n),
            (&mut self.q_pre, qk * n * qw),
            (&mut self.k_pre, qk * n * kw),
            (&mut self.q_rstd, qk * n * c.num_heads),
            (&mut self.k_rstd, qk * n * c.num_kv_heads),
            (&mut self.q, n * qw),
            (&mut self.k, n * kw),
            (&mut self.v, n * kw),
            (&mut self.probs, probs),
            (&mut self.att, n * qw),
            (&mut self.x_mid, n * h),
            (&mut self.attn_out, post * n * h),
            (&mut self.attn_out_rstd, post * n),
            (&mut self.mlp_out, post * n * h),
            (&mut self.mlp_out_rstd, post * n),
            (&mut self.xn2, n * h),
            (&mut self.rstd2, n),
            (&mut self.gate, n * f),
            (&mut self.up, n * f),
            (&mut self.act, n * f),
        ] {
            buf.resize(len, 0.0);
        }
    }
}

/// Gradients flowing through one block during the backward, for `n` tokens.
#[derive(Default)]
pub(crate) struct BlockGrads {
    /// `[n × h]` the gradient w.r.t. the block's output on entry, w.r.t. its input on exit.
    pub(crate) dx: Vec<f32>,
    /// `[n × h]` the gradient w.r.t. a normalized input (xn2, then xn1).
    pub(crate) dxn: Vec<f32>,
    /// `[n × qw]`, `[n × kw]`, `[n × kw]`, `[n × qw]`: q, k, v and the attention output.
    pub(crate) dq: Vec<f32>,
    pub(crate) dk: Vec<f32>,
    pub(crate) dv: Vec<f32>,
    pub(crate) datt: Vec<f32>,
    /// `[n × kw]` k before its per-head norm (qwen3 only; else empty).
    pub(crate) dk_pre: Vec<f32>,
    /// `[n × h]` the gradient w.r.t. a branch's output before its post-norm (Gemma 3; else empty).
    pub(crate) dbranch: Vec<f32>,
    /// `[n × f]` each: gate, up, and the MLP's activation.
    pub(crate) dgate: Vec<f32>,
    pub(crate) dup: Vec<f32>,
    pub(crate) dact: Vec<f32>,
    /// Attention backward scratch, [`AttnShape::scratch_len`].
    pub(crate) attn_scratch: Vec<f32>,
    /// LoRA backward scratch (sized on use).
    pub(crate) lora_du: Vec<f32>,
    pub(crate) lora_x: Vec<f32>,
    pub(crate) lora_dx: Vec<f32>,
}

impl BlockGrads {
    /// Fits every buffer to `s`'s tokens (see [`BlockActs::fit`]).
    pub(crate) fn fit(&mut self, c: &ModelConfig, s: AttnShape) {
        let (n, h, f) = (s.batch * s.seq, c.hidden_size, c.intermediate_size);
        let (qw, kw) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let qk = usize::from(c.arch.qk_norm());
        let post = usize::from(c.arch.post_norms());
        for (buf, len) in [
            (&mut self.dx, n * h),
            (&mut self.dxn, n * h),
            (&mut self.dq, n * qw),
            (&mut self.dk, n * kw),
            (&mut self.dv, n * kw),
            (&mut self.datt, n * qw),
            (&mut self.dk_pre, qk * n * kw),
            (&mut self.dbranch, post * n * h),
            (&mut self.dgate, n * f),
            (&mut self.dup, n * f),
            (&mut self.dact, n * f),
            (&mut self.attn_scratch, s.scratch_len()),
        ] {
            buf.resize(len, 0.0);
        }
    }
}

/// Where a block's attention finds keys and values for its queries.
pub(crate) trait Attend {
    /// Fills `a.att` from `a.q`, `a.k` and `a.v` (after RoPE) of layer `l`, whose queries see
    /// the keys less than `window` positions back (all of them for `None`).
    fn attend(&mut self, l: usize, window: Option<usize>, a: &mut BlockActs);
}

/// Training and scoring: the batch attends within its segments; the probabilities are kept for
/// the backward.
pub(crate) struct BatchAttention<'b> {
    pub(crate) segments: &'b [u32],
    pub(crate) positions: &'b [u32],
    pub(crate) shape: AttnShape,
}

impl Attend for BatchAttention<'_> {
    fn attend(&mut self, _l: usize, window: Option<usize>, a: &mut BlockActs) {
        let shape = AttnShape { window, ..self.shape };
        attention_forward(&mut a.att, &mut a.probs, &a.q, &a.k, &a.v, self.segments, self.positions, shape);
    }
}

/// The RoPE tables a model's layers use: Gemma 3's sliding layers have their own base.
pub(crate) struct LayerRopes {
    full: RopeTable<f32>,
    sliding: Option<RopeTable<f32>>,
}

impl LayerRopes {
    /// Tables for positions `0..positions`.
    pub(crate) fn new(c: &ModelConfig, positions: usize) -> Self {
        let sliding = c.rope_local_theta.map(|_| RopeTable::new(&c.rope_inv_freq(LayerKind::Sliding), positions));
        LayerRopes { full: RopeTable::new(&c.rope_inv_freq(LayerKind::Full), positions), sliding }
    }

    /// Positions covered.
    pub(crate) fn len(&self) -> usize {
        self.full.len()
    }

    /// Layer `l`'s table.
    pub(crate) fn layer(&self, c: &ModelConfig, l: usize) -> &RopeTable<f32> {
        match (&self.sliding, c.layer_kinds[l]) {
            (Some(sliding), LayerKind::Sliding) => sliding,
            _ => &self.full,
        }
    }
}

/// One layer's projections packed for `x·Wᵀ` over a few rows (batched decoding).
pub(crate) struct PackedLayer {
    pub(crate) q: PackedLinear,
    pub(crate) k: PackedLinear,
    pub(crate) v: PackedLinear,
    pub(crate) o: PackedLinear,
    pub(crate) gate: PackedLinear,
    pub(crate) up: PackedLinear,
    pub(crate) down: PackedLinear,
}

/// `y[rows × n_out] = x·Wᵀ + b`, through the packed copy of `w` when there is one.
pub(crate) fn project(
    y: &mut [f32],
    x: &[f32],
    packed: Option<&PackedLinear>,
    w: &[f32],
    bias: Option<&[f32]>,
    n_in: usize,
    n_out: usize,
) {
    match packed {
        Some(pw) => {
            pw.forward(y, x, w, false);
            if let Some(b) = bias {
                y.chunks_mut(n_out).for_each(|row| row.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
            }
        }
        None => linear_forward(y, x, w, bias, n_in, n_out),
    }
}

/// Where the backward writes weight gradients: the base model's, unless it is frozen under LoRA
/// (then `grads` holds the adapter's and base weight gradients are skipped).
pub(crate) struct GradSink<'g> {
    pub(crate) grads: &'g mut [f32],
    pub(crate) frozen_base: bool,
}

impl GradSink<'_> {
    pub(crate) fn base(&mut self, range: &std::ops::Range<usize>) -> Option<&mut [f32]> {
        (!self.frozen_base).then(|| &mut self.grads[range.clone()])
    }
}

impl Transformer {
    /// Layer `l` over the tokens at `positions`: reads `x`, writes `out` (both `[n × h]`) and
    /// leaves its activations in `a`. `packed` holds the layer's weights packed for few rows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_forward(
        &self,
        l: usize,
        a: &mut BlockActs,
        x: &[f32],
        out: &mut [f32],
        positions: &[u32],
        ropes: &LayerRopes,
        packed: Option<&PackedLayer>,
        attention: &mut impl Attend,
    ) {
        let c = &self.config;
        let (p, r) = (&self.params, &self.layout.layers[l]);
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        let (off, eps) = (c.arch.norm_offset(), c.rms_norm_eps);
        let opt = |range: &Option<std::ops::Range<usize>>| range.clone().map(|r| &p[r]);
        // Attention half.
        rmsnorm_forward(&mut a.xn1, &mut a.rstd1, x, &p[r.attn_norm.clone()], off, eps);
        let (q, k) = if c.arch.qk_norm() { (&mut a.q_pre, &mut a.k_pre) } else { (&mut a.q, &mut a.k) };
        project(q, &a.xn1, packed.map(|w| &w.q), &p[r.q.clone()], opt(&r.q_bias), h, qw);
        project(k, &a.xn1, packed.map(|w| &w.k), &p[r.k.clone()], opt(&r.k_bias), h, kw);
        project(&mut a.v, &a.xn1, packed.map(|w| &w.v), &p[r.v.clone()], opt(&r.v_bias), h, kw);
        let qkv = [Module::Q, Module::K, Module::V];
        self.lora_forward_modules(l, &qkv, &mut [q, k, &mut a.v], &a.xn1, &mut a.lora_u, &mut a.lora_x);
        if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
            rmsnorm_forward(&mut a.q, &mut a.q_rstd, &a.q_pre, &p[qn.clone()], off, eps);
            rmsnorm_forward(&mut a.k, &mut a.k_rstd, &a.k_pre, &p[kn.clone()], off, eps);
        }
        let rope = ropes.layer(c, l);
        rope.apply(&mut a.q, positions, c.num_heads, false);
        rope.apply(&mut a.k, positions, c.num_kv_heads, false);
        attention.attend(l, c.window(l), a);
        // The attention branch lands in x_mid, or in attn_out when a post-norm follows.
        let branch = if r.post_attn_norm.is_some() { &mut a.attn_out } else { &mut a.x_mid };
        project(branch, &a.att, packed.map(|w| &w.o), &p[r.o.clone()], None, qw, h);
        self.lora_forward_modules(l, &[Module::O], &mut [branch], &a.att, &mut a.lora_u, &mut a.lora_x);
        if let Some(pn) = &r.post_attn_norm {
            rmsnorm_forward(&mut a.x_mid, &mut a.attn_out_rstd, &a.attn_out, &p[pn.clone()], off, eps);
        }
        add_into(&mut a.x_mid, x);
        // MLP half.
        rmsnorm_forward(&mut a.xn2, &mut a.rstd2, &a.x_mid, &p[r.mlp_norm.clone()], off, eps);
        project(&mut a.gate, &a.xn2, packed.map(|w| &w.gate), &p[r.gate.clone()], None, h, f);
        project(&mut a.up, &a.xn2, packed.map(|w| &w.up), &p[r.up.clone()], None, h, f);
        let gate_up = [Module::Gate, Module::Up];
        self.lora_forward_modules(l, &gate_up, &mut [&mut a.gate, &mut a.up], &a.xn2, &mut a.lora_u, &mut a.lora_x);
        glu_forward(c.arch.gate(), &mut a.act, &a.gate, &a.up);
        let branch = if r.post_mlp_norm.is_some() { &mut a.mlp_out } else { &mut *out };
        project(branch, &a.act, packed.map(|w| &w.down), &p[r.down.clone()], None, f, h);
        self.lora_forward_modules(l, &[Module::Down], &mut [branch], &a.act, &mut a.lora_u, &mut a.lora_x);
        if let Some(pn) = &r.post_mlp_norm {
            rmsnorm_forward(out, &mut a.mlp_out_rstd, &a.mlp_out, &p[pn.clone()], off, eps);
        }
        add_into(out, &a.x_mid);
    }

    /// Backward of [`Self::block_forward`] over a training batch: turns `d.dx` from the
    /// gradient w.r.t. layer `l`'s output into the gradient w.r.t. its input `x`, adding weight
    /// gradients into `g`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_backward(
        &self,
        l: usize,
        a: &BlockActs,
        x: &[f32],
        d: &mut BlockGrads,
        positions: &[u32],
        ropes: &LayerRopes,
        shape: AttnShape,
        g: &mut GradSink,
    ) {
        self.mlp_backward(l, a, d, g);
        self.attention_half_backward(l, a, x, d, positions, ropes.layer(&self.config, l), shape, g);
    }

    /// `out = x_mid + [post_norm](down(act(gate(xn2)) ⊙ up(xn2)))`: `d.dx` becomes the gradient
    /// w.r.t. x_mid.
    fn mlp_backward(&self, l: usize, a: &BlockActs, d: &mut BlockGrads, g: &mut GradSink) {
        let c = &self.config;
        let (p, r): (&[f32], &LayerRanges) = (&self.params, &self.layout.layers[l]);
        let (h, f, off) = (c.hidden_size, c.intermediate_size, c.arch.norm_offset());
        if let Some(pn) = &r.post_mlp_norm {
            d.dbranch.fill(0.0);
            rmsnorm_backward(&mut d.dbranch, g.base(pn), &d.dx, &a.mlp_out, &p[pn.clone()], off, &a.mlp_out_rstd);
        }
        let dy: &[f32] = if r.post_mlp_norm.is_some() { &d.dbranch } else { &d.dx };
        let mut ls = LoraScratch { du: &mut d.lora_du, x: &mut d.lora_x, dx: &mut d.lora_dx };
        linear_backward(Some(&mut d.dact), false, g.base(&r.down), None, dy, &a.act, &p[r.down.clone()], f, h);
        self.lora_backward_modules(l, &[Module::Down], &mut d.dact, &[dy], &a.act, &a.lora_u, g.grads, &mut ls);
        glu_backward(c.arch.gate(), &mut d.dgate, &mut d.dup, &d.dact, &a.gate, &a.up);
        linear_backward(Some(&mut d.dxn), false, g.base(&r.gate), None, &d.dgate, &a.xn2, &p[r.gate.clone()], h, f);
        linear_backward(Some(&mut d.dxn), true, g.base(&r.up), None, &d.dup, &a.xn2, &p[r.up.clone()], h, f);
        let (gate_up, dys) = ([Module::Gate, Module::Up], [&d.dgate[..], &d.dup[..]]);
        self.lora_backward_modules(l, &gate_up, &mut d.dxn, &dys, &a.xn2, &a.lora_u, g.grads, &mut ls);
        rmsnorm_backward(&mut d.dx, g.base(&r.mlp_norm), &d.dxn, &a.x_mid, &p[r.mlp_norm.clone()], off, &a.rstd2);
    }

    /// `x_mid = x + [post_norm](o(attention(rope(q), rope(k), v)))`: `d.dx` becomes the gradient
    /// w.r.t. x.
    #[allow(clippy::too_many_arguments)]
    fn attention_half_backward(
        &self,
        l: usize,
        a: &BlockActs,
        x: &[f32],
        d: &mut BlockGrads,
        positions: &[u32],
        rope: &RopeTable<f32>,
        shape: AttnShape,
        g: &mut GradSink,
    ) {
        let c = &self.config;
        let (p, r): (&[f32], &LayerRanges) = (&self.params, &self.layout.layers[l]);
        let (h, qw, kw) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let off = c.arch.norm_offset();
        if let Some(pn) = &r.post_attn_norm {
            d.dbranch.fill(0.0);
            rmsnorm_backward(&mut d.dbranch, g.base(pn), &d.dx, &a.attn_out, &p[pn.clone()], off, &a.attn_out_rstd);
        }
        let dy: &[f32] = if r.post_attn_norm.is_some() { &d.dbranch } else { &d.dx };
        let mut ls = LoraScratch { du: &mut d.lora_du, x: &mut d.lora_x, dx: &mut d.lora_dx };
        linear_backward(Some(&mut d.datt), false, g.base(&r.o), None, dy, &a.att, &p[r.o.clone()], qw, h);
        self.lora_backward_modules(l, &[Module::O], &mut d.datt, &[dy], &a.att, &a.lora_u, g.grads, &mut ls);
        let (dq, dk, dv) = (&mut d.dq, &mut d.dk, &mut d.dv);
        attention_backward(dq, dk, dv, &mut d.attn_scratch, &d.datt, &a.probs, &a.q, &a.k, &a.v, shape);
        rope.apply(&mut d.dq, positions, c.num_heads, true);
        rope.apply(&mut d.dk, positions, c.num_kv_heads, true);
        // With per-head q/k norms, the projections' outputs are q_pre/k_pre: take the gradient
        // through the norms (into datt, free now, and dk_pre).
        let (dq, dk): (&[f32], &[f32]) = if let (Some(qn), Some(kn)) = (&r.q_norm, &r.k_norm) {
            d.datt.fill(0.0);
            d.dk_pre.fill(0.0);
            rmsnorm_backward(&mut d.datt, g.base(qn), &d.dq, &a.q_pre, &p[qn.clone()], off, &a.q_rstd);
            rmsnorm_backward(&mut d.dk_pre, g.base(kn), &d.dk, &a.k_pre, &p[kn.clone()], off, &a.k_rstd);
            (&d.datt, &d.dk_pre)
        } else {
            (&d.dq, &d.dk)
        };
        linear_backward_into(g, &mut d.dxn, false, r.q.clone(), r.q_bias.clone(), dq, &a.xn1, p, h, qw);
        linear_backward_into(g, &mut d.dxn, true, r.k.clone(), r.k_bias.clone(), dk, &a.xn1, p, h, kw);
        linear_backward_into(g, &mut d.dxn, true, r.v.clone(), r.v_bias.clone(), &d.dv, &a.xn1, p, h, kw);
        let qkv = [Module::Q, Module::K, Module::V];
        self.lora_backward_modules(l, &qkv, &mut d.dxn, &[dq, dk, &d.dv], &a.xn1, &a.lora_u, g.grads, &mut ls);
        rmsnorm_backward(&mut d.dx, g.base(&r.attn_norm), &d.dxn, x, &p[r.attn_norm.clone()], off, &a.rstd1);
    }
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

/// `dst += src`, elementwise.
pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(4096)
        .zip(src.par_chunks(4096))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s));
}
