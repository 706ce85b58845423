//! One optimizer step: forward, loss weights, backward, clipping, AdamW.

use anyhow::Result;
use keel_kernels::clip::clip_global_norm;
use keel_model::optim::AdamW;
use keel_model::{Batch, Transformer, Workspace};
use std::time::Instant;

/// What a step measured.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// `Σ weights · losses` before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub forward_s: f64,
    /// Choosing the loss weights from the losses (the objective's own cost; part of forward_s).
    pub weights_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
}

/// Buffers a training run reuses every step.
pub struct Trainer {
    pub workspace: Workspace,
    pub grads: Vec<f32>,
    pub optimizer: AdamW,
    pub max_grad_norm: f64,
}

impl Trainer {
    /// One step on `batch` with per-position loss weights chosen by `weigh` from the
    /// per-position losses (plain mean cross-entropy: `Batch::mean_weights`).
    pub fn step(
        &mut self,
        model: &mut Transformer,
        batch: &Batch,
        lr: f64,
        weigh: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<StepStats> {
        let t0 = Instant::now();
        self.grads.fill(0.0);
        let losses = model.forward(&mut self.workspace, batch)?;
        let tw = Instant::now();
        let weights = weigh(losses);
        let weights_s = tw.elapsed().as_secs_f64();
        let loss = losses.iter().zip(&weights).map(|(&l, &w)| l as f64 * w as f64).sum();
        let t1 = Instant::now();
        model.backward(&mut self.workspace, batch, &weights, &mut self.grads)?;
        let t2 = Instant::now();
        let grad_norm = self.apply_update(model, lr);
        let t3 = Instant::now();
        Ok(StepStats {
            loss,
            grad_norm,
            forward_s: (t1 - t0).as_secs_f64(),
            weights_s,
            backward_s: (t2 - t1).as_secs_f64(),
            optimizer_s: (t3 - t2).as_secs_f64(),
        })
    }

    /// Clips the accumulated gradients and applies AdamW at `lr`; returns the norm before clipping.
    pub fn apply_update(&mut self, model: &mut Transformer, lr: f64) -> f64 {
        let grad_norm = clip_global_norm(&mut self.grads, self.max_grad_norm);
        let (tensors, params) = model.trainable_mut();
        self.optimizer.update(tensors, params, &self.grads, lr);
        grad_norm
    }
}
