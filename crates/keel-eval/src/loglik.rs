//! Log-likelihoods of continuations given contexts, batched through the training forward.

use anyhow::{ensure, Result};
use keel_data::progress::Progress;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::{Batch, Transformer, Workspace};

/// Bytes of attention probabilities one scoring pass may hold.
const ATTENTION_BUDGET: usize = 256 << 20;

/// `Σ log p(continuation | context)` and whether every continuation token is the argmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogLik {
    pub ll: f64,
    pub is_greedy: bool,
}

/// Scores every (context, continuation) pair of token ids, `rows` sequences per forward.
/// Pairs that share a context and continue it by one token (multiple choice over letters) are
/// scored from a single forward of that context. `progress` counts forwarded sequences and tokens.
pub fn loglikelihoods(model: &Transformer, pairs: &[(Vec<u32>, Vec<u32>)], rows: usize, progress: &mut Progress) -> Result<Vec<LogLik>> {
    ensure!(rows > 0, "at least one row per batch");
    ensure!(pairs.iter().all(|(c, x)| !c.is_empty() && !x.is_empty()), "empty context or continuation");
    // One sequence per distinct (context, continuation), except that one-token continuations
    // of the same context share theirs.
    let mut sequences: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
    let mut seq_of: Vec<usize> = Vec::with_capacity(pairs.len());
    let mut shared: std::collections::HashMap<&[u32], usize> = Default::default();
    for (ctx, cont) in pairs {
        let idx = if cont.len() == 1 {
            *shared.entry(ctx.as_slice()).or_insert_with(|| {
                sequences.push((ctx.clone(), cont.clone()));
                sequences.len() - 1
            })
        } else {
            sequences.push((ctx.clone(), cont.clone()));
            sequences.len() - 1
        };
        seq_of.push(idx);
    }
    progress.set_total(sequences.len());
    let rows_logits = score_sequences(model, &sequences, rows, progress)?;
    Ok(pairs
        .iter()
        .zip(&seq_of)
        .map(|((_, cont), &s)| {
            let (scored, last_row) = &rows_logits[s];
            if cont.len() == 1 {
                // Read this choice's token from the shared row of next-token logits.
                let row = last_row.as_ref().expect("one-token continuations keep their logits row");
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max as f64 + row.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
                let best = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (j, &x)| if x > b.1 { (j, x) } else { b }).0;
                LogLik { ll: row[cont[0] as usize] as f64 - lse, is_greedy: best as u32 == cont[0] }
            } else {
                *scored
            }
        })
        .collect())
}

/// Scores each sequence's continuation; for one-token continuations also returns the logits row
/// that predicts it.
fn score_sequences(model: &Transformer, pairs: &[(Vec<u32>, Vec<u32>)], rows: usize, progress: &mut Progress) -> Result<Vec<(LogLik, Option<Vec<f32>>)>> {
    // Longest first, so the workspace is sized by the first batch and later ones fit in it.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].0.len() + pairs[i].1.len()));
    let Some(&first) = order.first() else { return Ok(Vec::new()) };
    let len = |i: usize| pairs[i].0.len() + pairs[i].1.len();
    let max_len = len(first);
    // Attention probabilities take rows·heads·T² floats: long contexts (few-shot prompts) get
    // fewer rows per pass. Forward only, so keep one layer's activations (checkpointing mode).
    let fit = |t: usize| (ATTENTION_BUDGET / (model.config.num_heads * t * t * 4)).clamp(1, rows);
    let cap_rows = fit(max_len).min(pairs.len());
    let mut ws = Workspace::new(&model.config, cap_rows, max_len, true)?;
    // Only the continuation positions need logits.
    ws.logits_at_targets_only = true;
    let vocab = model.config.vocab_size;
    let mut out = vec![(LogLik { ll: 0.0, is_greedy: false }, None); pairs.len()];
    let mut at = 0;
    while at < order.len() {
        let t = len(order[at]);
        // As many rows as the budget and the workspace (sized by the longest sequence) allow.
        let take = fit(t).min(cap_rows * max_len / t).min(cap_rows * max_len * max_len / (t * t)).max(1);
        let chunk = &order[at..(at + take).min(order.len())];
        at += chunk.len();
        let seq = t;
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
            let last_row = (pairs[i].1.len() == 1).then(|| {
                let pos = r * seq + pairs[i].0.len() - 1;
                ws.logits_row(pos, vocab).expect("target positions have logits").to_vec()
            });
            out[i] = (LogLik { ll, is_greedy: greedy }, last_row);
        }
        progress.advance(chunk.len(), chunk.iter().map(|&i| len(i)).sum());
    }
    Ok(out)
}
