//! A batch of token sequences as the engine consumes it.

use anyhow::{ensure, Result};
use keel_kernels::cross_entropy::IGNORE;

/// `batch × seq` tokens, row-major. Position `t` is trained to predict `targets[t]` (normally the
/// token at `t + 1`); [`IGNORE`] marks positions without a loss.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Number of rows (sequences).
    pub batch: usize,
    /// Tokens per row, padding included.
    pub seq: usize,
    /// `[batch × seq]` input token ids.
    pub ids: Vec<u32>,
    /// RoPE positions (restart at 0 for each packed sequence).
    pub positions: Vec<u32>,
    /// Attention segments: 0 = padding, otherwise tokens see earlier tokens of the same segment.
    pub segments: Vec<u32>,
    /// `[batch × seq]` the token each position is trained to predict, or [`IGNORE`].
    pub targets: Vec<u32>,
}

impl Batch {
    /// From Hugging Face tensors: `labels` uses -100 for "no loss" and is shifted here, as
    /// transformers shifts it (position t predicts labels[t + 1]).
    pub fn from_hf(
        batch: usize,
        seq: usize,
        input_ids: &[i64],
        attention_mask: &[i64],
        position_ids: &[i64],
        labels: &[i64],
    ) -> Result<Self> {
        let n = batch * seq;
        ensure!(
            [input_ids.len(), attention_mask.len(), position_ids.len(), labels.len()].iter().all(|&l| l == n),
            "batch tensors must all hold {batch}×{seq} values"
        );
        let as_u32 = |v: i64, what: &str| -> Result<u32> {
            ensure!((0..u32::MAX as i64).contains(&v), "{what} value {v} out of range");
            Ok(v as u32)
        };
        let mut targets = vec![IGNORE; n];
        for b in 0..batch {
            for t in 0..seq - 1 {
                let l = labels[b * seq + t + 1];
                if l != -100 {
                    targets[b * seq + t] = as_u32(l, "labels")?;
                }
            }
        }
        Ok(Batch {
            batch,
            seq,
            ids: input_ids.iter().map(|&v| as_u32(v, "input_ids")).collect::<Result<_>>()?,
            positions: position_ids.iter().map(|&v| as_u32(v, "position_ids")).collect::<Result<_>>()?,
            segments: attention_mask.iter().map(|&v| as_u32(v, "attention_mask")).collect::<Result<_>>()?,
            targets,
        })
    }

    /// Positions that carry a loss.
    pub fn num_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }

    /// Per-token coefficients of plain mean cross-entropy: `1/n` on every target.
    pub fn mean_coefficients(&self) -> Vec<f32> {
        let w = 1.0 / self.num_targets().max(1) as f32;
        self.targets.iter().map(|&t| if t == IGNORE { 0.0 } else { w }).collect()
    }
}
