//! Log-likelihoods of continuations given contexts, batched through the training forward.

use anyhow::{ensure, Result};
use keel_kernels::cross_entropy::IGNORE;
use keel_model::{Batch, Transformer, Workspace};

/// `Σ log p(continuation | context)` and whether every continuation token is the argmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogLik {
    pub ll: f64,
    pub is_greedy: bool,
}

/// Scores every (context, continuation) pair of token ids, `rows` sequences per forward.
pub fn loglikelihoods(model: &Transformer, pairs: &[(Vec<u32>, Vec<u32>)], rows: usize) -> Result<Vec<LogLik>> {
    ensure!(rows > 0, "at least one row per batch");
    ensure!(pairs.iter().all(|(c, x)| !c.is_empty() && !x.is_empty()), "empty context or continuation");
    // Longest first, so the workspace is sized by the first batch and later ones fit in it.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].0.len() + pairs[i].1.len()));
    let Some(&first) = order.first() else { return Ok(Vec::new()) };
    let max_len = pairs[first].0.len() + pairs[first].1.len();
    let mut ws = Workspace::new(&model.config, rows.min(pairs.len()), max_len, false)?;
    // Only the continuation positions need logits.
    ws.logits_at_targets_only = true;
    let vocab = model.config.vocab_size;
    let mut out = vec![LogLik { ll: 0.0, is_greedy: false }; pairs.len()];
    for chunk in order.chunks(rows) {
        let seq = chunk.iter().map(|&i| pairs[i].0.len() + pairs[i].1.len()).max().unwrap_or(1);
        let n = chunk.len() * seq;
        let mut batch = Batch { batch: chunk.len(), seq, ids: vec![0; n], positions: vec![0; n], segments: vec![0; n], targets: vec![IGNORE; n] };
        for (r, &i) in chunk.iter().enumerate() {
            let (ctx, cont) = &pairs[i];
            let full: Vec<u32> = ctx.iter().chain(cont).copied().collect();
            for (t, &id) in full.iter().enumerate() {
                batch.ids[r * seq + t] = id;
                batch.positions[r * seq + t] = t as u32;
                batch.segments[r * seq + t] = 1;
                if t + 1 >= ctx.len() && t + 1 < full.len() {
                    batch.targets[r * seq + t] = full[t + 1];
                }
            }
        }
        let losses = model.forward(&mut ws, &batch)?.to_vec();
        for (r, &i) in chunk.iter().enumerate() {
            let mut ll = 0.0;
            let mut greedy = true;
            for t in r * seq..(r + 1) * seq {
                let target = batch.targets[t];
                if target == IGNORE {
                    continue;
                }
                ll -= losses[t] as f64;
                let row = ws.logits_row(t, vocab).expect("target positions have logits");
                let best = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (j, &x)| if x > b.1 { (j, x) } else { b }).0;
                greedy &= best as u32 == target;
            }
            out[i] = LogLik { ll, is_greedy: greedy };
        }
    }
    Ok(out)
}
