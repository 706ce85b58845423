//! AdamW over the whole flat parameter buffer, with weight decay on matrices only.

use crate::params::TensorSpec;
use keel_kernels::adamw::{adamw_update, AdamWHyper};

/// AdamW state: first and second moments in the parameters' layout, and the step count.
pub struct AdamW {
    /// Base hyperparameters; `lr` is replaced by the schedule's value at each step, and `weight_decay` by
    /// 0 for 1-D tensors.
    pub hyper: AdamWHyper,
    /// First moment (running mean of the gradients), in the parameters' layout.
    pub m: Vec<f32>,
    /// Second moment (running mean of the squared gradients), in the parameters' layout.
    pub v: Vec<f32>,
    /// Steps taken so far (bias correction uses `step + 1` for the next one).
    pub step: u64,
}

impl AdamW {
    /// Zeroed moments for `num_params` parameters, at step 0.
    pub fn new(num_params: usize, hyper: AdamWHyper) -> Self {
        AdamW { hyper, m: vec![0.0; num_params], v: vec![0.0; num_params], step: 0 }
    }

    /// One update at learning rate `lr`. Weight decay applies to matrices and embeddings, not
    /// to norm gains or biases (the convention of Hugging Face's Trainer).
    pub fn update(&mut self, tensors: &[TensorSpec], params: &mut [f32], grads: &[f32], lr: f64) {
        self.step += 1;
        for t in tensors {
            let h = AdamWHyper {
                lr,
                weight_decay: if t.is_matrix() { self.hyper.weight_decay } else { 0.0 },
                ..self.hyper
            };
            let r = t.range.clone();
            adamw_update(
                &mut params[r.clone()],
                &grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                &h,
                self.step,
            );
        }
    }
}
