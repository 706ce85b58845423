//! One optimizer step, the only one keel has: `keel train` and `keel bench train` both call
//! [`Trainer::optimizer_step`].
//!
//! A step is: the loss-only prepass (TALR's batch-wide scope under accumulation), then per
//! micro-batch forward, per-token coefficients (CE, TALR, DFT, FLOW) and backward into one
//! gradient buffer; L2 toward θ₀; the non-finite guard; clipping and AdamW; the check that every
//! updated weight is finite.

use crate::objective::talr::CoefficientStats;
use crate::objective::{token_coefficients, Objective};
use anyhow::{bail, Result};
use keel_data::batching::Collated;
use keel_kernels::clip::clip_global_norm;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::optim::AdamW;
use keel_model::{Transformer, Workspace};
use rayon::prelude::*;
use std::time::Instant;

/// L2 regularization toward the initial weights: `λ · Σ (θ − θ₀)² / N`.
pub struct L2ToInitial {
    /// λ.
    pub lambda: f64,
    /// θ₀, `[num_trainable]`.
    pub initial: Vec<f32>,
}

/// The state a training run keeps across steps: buffers, the optimizer and the objective.
pub struct Trainer {
    /// Activations, sized once for the largest micro-batch.
    pub workspace: Workspace,
    /// Gradients of the trainable parameters, `[num_trainable]`, accumulated over micro-batches.
    pub grads: Vec<f32>,
    /// AdamW with its moments, `[num_trainable]` each.
    pub optimizer: AdamW,
    /// Global-norm clipping threshold.
    pub max_grad_norm: f64,
    /// How per-token coefficients are chosen from the losses.
    pub objective: Objective,
    /// TALR's softmax and median span the whole optimizer batch (else each micro-batch alone).
    pub batch_scope: bool,
    /// FLOW's per-example coefficients, by `Collated::example_of` index.
    pub flow_coefficients: Option<Vec<f64>>,
    /// L2 toward the initial weights, when `train.l2_init > 0`.
    pub l2: Option<L2ToInitial>,
}

/// What one optimizer step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// The objective's loss `Σ cᵢ ℓᵢ` (plus the L2 penalty) before the update.
    pub loss: f64,
    /// Plain mean cross-entropy of the supervised tokens (comparable across objectives).
    pub ce: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The L2 penalty, when L2 toward θ₀ is on.
    pub l2_penalty: Option<f64>,
    /// TALR's and DFT's coefficient statistics.
    pub coefficients: Option<CoefficientStats>,
    /// Non-padding tokens forwarded (each once, not counting the prepass).
    pub tokens: u64,
    /// Tokens with a target.
    pub supervised_tokens: usize,
    /// Forward passes, prepass included.
    pub forward_s: f64,
    /// Choosing the coefficients from the losses (the objective's own cost).
    pub coefficients_s: f64,
    /// Backward passes.
    pub backward_s: f64,
    /// L2, clipping, AdamW and the finite-weight check.
    pub optimizer_s: f64,
}

/// The error of a step whose loss or gradient is not finite; the weights were not updated.
#[derive(Debug)]
pub struct NonFiniteStep {
    /// The objective's loss.
    pub loss: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
}

impl std::fmt::Display for NonFiniteStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the loss is {} and the gradient norm {}", self.loss, self.grad_norm)
    }
}

impl std::error::Error for NonFiniteStep {}

/// One supervised token of an optimizer batch: where it is, its loss, its example.
struct Token {
    micro: usize,
    pos: usize,
    loss: f64,
    example: usize,
}

impl Trainer {
    /// One optimizer step over `micro_batches` at learning rate `lr`. `step` (0-based) keys
    /// LoRA's dropout masks, so that a resumed run redraws the same ones.
    pub fn optimizer_step(
        &mut self,
        model: &mut Transformer,
        micro_batches: &[Collated],
        lr: f64,
        step: u64,
    ) -> Result<StepReport> {
        let supervised_tokens: usize = micro_batches.iter().map(|c| c.batch.num_targets()).sum();
        let mut report = StepReport {
            loss: 0.0,
            ce: 0.0,
            grad_norm: 0.0,
            l2_penalty: None,
            coefficients: None,
            tokens: micro_batches.iter().map(|c| c.batch.segments.iter().filter(|&&s| s != 0).count() as u64).sum(),
            supervised_tokens,
            forward_s: 0.0,
            coefficients_s: 0.0,
            backward_s: 0.0,
            optimizer_s: 0.0,
        };
        self.grads.fill(0.0);
        // Coefficients for TALR's batch-wide softmax need every micro-batch's losses first: a
        // loss-only forward pass over them, then forward + backward per micro-batch.
        let prepass = self.objective.batch_wide() && self.batch_scope && micro_batches.len() > 1;
        let mut batch_wide = Vec::new();
        if prepass {
            let mut tokens = Vec::new();
            for (mi, mb) in micro_batches.iter().enumerate() {
                set_dropout_key(model, step, mi);
                let t = Instant::now();
                let losses = model.forward(&mut self.workspace, &mb.batch)?;
                report.forward_s += t.elapsed().as_secs_f64();
                collect_tokens(mi, mb, losses, &mut tokens);
            }
            let t = Instant::now();
            (batch_wide, report.coefficients) = coefficients(
                &self.objective,
                self.flow_coefficients.as_deref(),
                &tokens,
                micro_batches,
                supervised_tokens,
            );
            report.coefficients_s += t.elapsed().as_secs_f64();
        }
        let mut ce_sum = 0.0f64;
        for (mi, mb) in micro_batches.iter().enumerate() {
            set_dropout_key(model, step, mi);
            let t = Instant::now();
            let losses = model.forward(&mut self.workspace, &mb.batch)?;
            report.forward_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let c = if prepass {
                std::mem::take(&mut batch_wide[mi])
            } else {
                let mut tokens = Vec::new();
                collect_tokens(0, mb, losses, &mut tokens);
                let flow = self.flow_coefficients.as_deref();
                let (mut c, stats) =
                    coefficients(&self.objective, flow, &tokens, std::slice::from_ref(mb), supervised_tokens);
                report.coefficients = report.coefficients.or(stats);
                c.remove(0)
            };
            report.coefficients_s += t.elapsed().as_secs_f64();
            report.loss += losses.iter().zip(&c).map(|(&l, &c)| l as f64 * c as f64).sum::<f64>();
            let supervised = mb.batch.targets.iter().zip(losses).filter(|(t, _)| **t != IGNORE);
            ce_sum += supervised.map(|(_, &l)| l as f64).sum::<f64>();
            let t = Instant::now();
            model.backward(&mut self.workspace, &mb.batch, &c, &mut self.grads)?;
            report.backward_s += t.elapsed().as_secs_f64();
        }
        report.ce = ce_sum / supervised_tokens.max(1) as f64;
        let t = Instant::now();
        self.update(model, lr, &mut report)?;
        report.optimizer_s = t.elapsed().as_secs_f64();
        Ok(report)
    }

    /// L2, the non-finite guard, clipping, AdamW and the finite-weight check.
    fn update(&mut self, model: &mut Transformer, lr: f64, report: &mut StepReport) -> Result<()> {
        if let Some(l2) = &self.l2 {
            let penalty =
                crate::l2::add_l2_to_initial(&mut self.grads, model.trainable_params(), &l2.initial, l2.lambda);
            report.loss += penalty;
            report.l2_penalty = Some(penalty);
        }
        report.grad_norm = keel_kernels::clip::global_norm(&self.grads);
        if !report.loss.is_finite() || !report.grad_norm.is_finite() {
            return Err(NonFiniteStep { loss: report.loss, grad_norm: report.grad_norm }.into());
        }
        clip_global_norm(&mut self.grads, self.max_grad_norm);
        let (tensors, params) = model.trainable_mut();
        self.optimizer.update(tensors, params, &self.grads, lr);
        if let Some(i) = model.trainable_params().par_iter().position_any(|w| !w.is_finite()) {
            bail!("the update made trainable parameter {i} non-finite (lr {lr:e}); lower train.lr or raise train.eps");
        }
        Ok(())
    }
}

/// Per-position coefficients for each of `micro` (one vector per micro-batch), from the tokens
/// of the group. The objective normalizes by the group's token count; rescaling to `n_total`
/// makes the accumulated loss the mean over the whole optimizer batch.
fn coefficients(
    objective: &Objective,
    flow: Option<&[f64]>,
    tokens: &[Token],
    micro: &[Collated],
    n_total: usize,
) -> (Vec<Vec<f32>>, Option<CoefficientStats>) {
    let losses: Vec<f64> = tokens.iter().map(|t| t.loss).collect();
    let sequence: Vec<usize> = tokens.iter().map(|t| t.example).collect();
    let sample: Vec<f64> = tokens.iter().map(|t| flow.map_or(1.0, |w| w[t.example])).collect();
    let (c, stats) = token_coefficients(objective, &losses, &sequence, &sample);
    let rescale = tokens.len() as f64 / n_total.max(1) as f64;
    let mut out: Vec<Vec<f32>> = micro.iter().map(|m| vec![0.0; m.batch.targets.len()]).collect();
    for (t, c) in tokens.iter().zip(c) {
        out[t.micro][t.pos] = (c * rescale) as f32;
    }
    (out, stats)
}

/// Each micro-batch draws its own LoRA dropout masks, reproducibly (resume gives the same ones).
fn set_dropout_key(model: &mut Transformer, step: u64, micro: usize) {
    if let Some(l) = &mut model.lora {
        l.dropout_key = step.wrapping_mul(0x1_0000) ^ micro as u64;
    }
}

fn collect_tokens(micro: usize, mb: &Collated, losses: &[f32], out: &mut Vec<Token>) {
    for (pos, &ex) in mb.example_of.iter().enumerate() {
        if ex != usize::MAX {
            out.push(Token { micro, pos, loss: losses[pos] as f64, example: ex });
        }
    }
}
