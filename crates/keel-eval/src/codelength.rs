//! The paper's own measure: code length. The mean per-token negative log-likelihood of
//! reference responses under a model, its difference ΔL against the base model (ΔL > 0 on
//! general data is degradation, ΔL < 0 on domain data improvement), and a token-probability
//! report (histogram, hardest tokens with their context).

use anyhow::{ensure, Result};
use keel_data::batching::{collate, Row};
use keel_data::mask::TokenizedExample;
use keel_data::tokenizer::Tokenizer;
use keel_model::{Transformer, Workspace};
use serde::Serialize;

/// Per supervised token: (example, position in the example, −log p).
pub struct TokenLosses {
    /// One entry per supervised token, in example order.
    pub losses: Vec<(usize, usize, f64)>,
}

impl TokenLosses {
    /// Mean per-token code length in nats.
    pub fn mean(&self) -> f64 {
        self.losses.iter().map(|l| l.2).sum::<f64>() / self.losses.len().max(1) as f64
    }
}

/// −log p of every supervised token of `examples` under `model`.
pub fn token_losses(model: &Transformer, examples: &[TokenizedExample], rows: usize) -> Result<TokenLosses> {
    ensure!(!examples.is_empty(), "no examples to measure");
    let max_len = examples.iter().map(|e| e.len()).max().unwrap_or(1);
    let mut ws = Workspace::new(&model.config, rows, max_len, true)?;
    ws.logits_at_targets_only = true;
    let mut losses = Vec::new();
    let order: Vec<usize> = (0..examples.len()).collect();
    for chunk in order.chunks(rows) {
        let batch_rows: Vec<Row> = chunk.iter().map(|&i| vec![i]).collect();
        let mb = collate(&batch_rows, examples, 0);
        let l = model.forward(&mut ws, &mb.batch)?;
        for (r, &ex) in chunk.iter().enumerate() {
            for t in 0..examples[ex].len() {
                let pos = r * mb.batch.seq + t;
                if mb.example_of[pos] != usize::MAX {
                    // Position t predicts token t + 1.
                    losses.push((ex, t + 1, l[pos] as f64));
                }
            }
        }
    }
    Ok(TokenLosses { losses })
}

/// The token-probability report of one model on one dataset.
#[derive(Serialize)]
pub struct ProbabilityReport {
    /// Supervised tokens measured.
    pub tokens: usize,
    /// Mean −log p per token, in nats (the code length per token).
    pub mean_nll: f64,
    /// Median token probability.
    pub median_probability: f64,
    /// Counts of token probabilities in [0, 0.1), [0.1, 0.2), …, [0.9, 1].
    pub histogram: [usize; 10],
    /// The least probable tokens, hardest first.
    pub hardest: Vec<HardToken>,
}

/// One low-probability target token, with where it occurs.
#[derive(Serialize)]
pub struct HardToken {
    /// Its probability under the model.
    pub probability: f64,
    /// The token's text.
    pub token: String,
    /// Up to 12 tokens before it.
    pub context: String,
    /// Index of its example among the measured ones.
    pub example: usize,
}

/// The token-probability report of `tl`: histogram, median, mean NLL and the `hardest` least
/// probable tokens with their context (decoded with `tok`).
pub fn probability_report(
    tl: &TokenLosses,
    examples: &[TokenizedExample],
    tok: &Tokenizer,
    hardest: usize,
) -> Result<ProbabilityReport> {
    let mut histogram = [0usize; 10];
    let mut probs: Vec<f64> = tl.losses.iter().map(|l| (-l.2).exp()).collect();
    probs.iter().for_each(|&p| histogram[((p * 10.0) as usize).min(9)] += 1);
    let mut idx: Vec<usize> = (0..tl.losses.len()).collect();
    idx.sort_by(|&a, &b| tl.losses[b].2.total_cmp(&tl.losses[a].2));
    let hard = idx
        .into_iter()
        .take(hardest)
        .map(|i| {
            let (ex, pos, loss) = tl.losses[i];
            let ids = &examples[ex].ids;
            Ok(HardToken {
                probability: (-loss).exp(),
                token: tok.decode(&ids[pos..pos + 1], false)?,
                context: tok.decode(&ids[pos.saturating_sub(12)..pos], false)?,
                example: ex,
            })
        })
        .collect::<Result<_>>()?;
    probs.sort_by(f64::total_cmp);
    Ok(ProbabilityReport {
        tokens: probs.len(),
        mean_nll: tl.mean(),
        median_probability: probs.get(probs.len() / 2).copied().unwrap_or(0.0),
        histogram,
        hardest: hard,
    })
}
