//! Log-likelihoods of continuations given contexts, batched through the training forward.
//!
//! Continuations of the same context share one forward row: the context once, then each
//! continuation as a segment that sees the context but not its siblings (the attention kernel's
//! shared-prefix segments). Multiple choice over four answers thus forwards the question once
//! instead of four times, and only continuation positions get logits.

use anyhow::{ensure, Result};
use keel_infer::progress::Progress;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::{Batch, Transformer, Workspace};

/// Bytes of attention probabilities one scoring pass may hold.
const ATTENTION_BUDGET: usize = 256 << 20;
/// Segment id of a row's shared context; continuation `c` (from 1) is `CONTEXT_SEGMENT | c`.
const CONTEXT_SEGMENT: u32 = 1 << 16;

/// `Σ log p(continuation | context)` and whether every continuation token is the argmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogLik {
    /// The continuation's log-likelihood, in nats.
    pub ll: f64,
    /// Whether greedy decoding would have produced the continuation.
    pub is_greedy: bool,
}

/// One forward row: a context and the distinct continuations scored after it.
struct Group<'a> {
    context: &'a [u32],
    continuations: Vec<&'a [u32]>,
}

impl Group<'_> {
    /// Input tokens: the context, then every continuation but its last token (a target only).
    fn len(&self) -> usize {
        self.context.len() + self.continuations.iter().map(|c| c.len() - 1).sum::<usize>()
    }
}

/// Scores every (context, continuation) pair of token ids, `rows` contexts per forward.
/// `progress` counts forwarded contexts and input tokens.
pub fn loglikelihoods(
    model: &Transformer,
    pairs: &[(Vec<u32>, Vec<u32>)],
    rows: usize,
    progress: &mut Progress,
) -> Result<Vec<LogLik>> {
    ensure!(rows > 0, "at least one row per batch");
    ensure!(pairs.iter().all(|(c, x)| !c.is_empty() && !x.is_empty()), "empty context or continuation");
    // Group pairs by context; identical pairs are scored once.
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: std::collections::HashMap<&[u32], usize> = Default::default();
    let mut slot: Vec<(usize, usize)> = Vec::with_capacity(pairs.len());
    for (ctx, cont) in pairs {
        let g = *group_of.entry(ctx.as_slice()).or_insert_with(|| {
            groups.push(Group { context: ctx, continuations: Vec::new() });
            groups.len() - 1
        });
        let conts = &mut groups[g].continuations;
        let c = conts.iter().position(|&c| c == cont.as_slice()).unwrap_or_else(|| {
            conts.push(cont);
            conts.len() - 1
        });
        ensure!(c < 0xFFFF, "more than 65534 continuations of one context");
        slot.push((g, c));
    }
    progress.set_total(groups.len());
    let scores = score_groups(model, &groups, rows, progress)?;
    Ok(slot.into_iter().map(|(g, c)| scores[g][c]).collect())
}

/// `log softmax(row)[token]` and whether `token` is the row's argmax.
fn log_prob(row: &[f32], token: u32) -> (f64, bool) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64 + row.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
    let best = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (j, &x)| if x > b.1 { (j, x) } else { b }).0;
    (row[token as usize] as f64 - lse, best as u32 == token)
}

/// Each group's continuation scores, in the group's order.
fn score_groups(
    model: &Transformer,
    groups: &[Group],
    rows: usize,
    progress: &mut Progress,
) -> Result<Vec<Vec<LogLik>>> {
    // Longest first, so the workspace is sized by the first batch and later ones fit in it.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(groups[i].len()));
    let Some(&first) = order.first() else { return Ok(Vec::new()) };
    let max_len = groups[first].len();
    let context = model.config.max_position_embeddings;
    ensure!(
        max_len <= context,
        "an item's context and continuations take {max_len} tokens, more than the model's context length of {context} (max_position_embeddings); use fewer few-shot examples or a shorter prompt"
    );
    // Attention probabilities take rows·heads·T² floats: long rows (few-shot prompts) get fewer
    // rows per pass. Forward only, so keep one layer's activations (checkpointing mode).
    let fit = |t: usize| (ATTENTION_BUDGET / (model.config.num_heads * t * t * 4)).clamp(1, rows);
    let cap_rows = fit(max_len).min(groups.len());
    let mut ws = Workspace::new(&model.config, cap_rows, max_len, true)?;
    ws.logits_at_targets_only = true;
    let vocab = model.config.vocab_size;
    let mut out = vec![Vec::new(); groups.len()];
    let mut at = 0;
    while at < order.len() {
        let seq = groups[order[at]].len();
        // As many rows as the budget and the workspace (sized by the longest row) allow.
        let take = fit(seq).min(cap_rows * max_len / seq).min(cap_rows * max_len * max_len / (seq * seq)).max(1);
        let chunk = &order[at..(at + take).min(order.len())];
        at += chunk.len();
        let n = chunk.len() * seq;
        let mut batch = Batch {
            batch: chunk.len(),
            seq,
            ids: vec![0; n],
            positions: vec![0; n],
            segments: vec![0; n],
            targets: vec![IGNORE; n],
        };
        // Per row and continuation: the batch positions whose targets are its tokens 2, 3, ….
        let mut spans: Vec<Vec<std::ops::Range<usize>>> = Vec::with_capacity(chunk.len());
        for (r, &g) in chunk.iter().enumerate() {
            let Group { context, continuations } = &groups[g];
            let base = r * seq;
            for (t, &id) in context.iter().enumerate() {
                (batch.ids[base + t], batch.positions[base + t], batch.segments[base + t]) =
                    (id, t as u32, CONTEXT_SEGMENT);
            }
            // The context's last position predicts every continuation's first token; any target
            // there makes the forward compute its logits row.
            batch.targets[base + context.len() - 1] = continuations[0][0];
            let mut next = base + context.len();
            let mut row_spans = Vec::with_capacity(continuations.len());
            for (c, cont) in continuations.iter().enumerate() {
                let start = next;
                for (u, &id) in cont[..cont.len() - 1].iter().enumerate() {
                    batch.ids[next] = id;
                    batch.positions[next] = (context.len() + u) as u32;
                    batch.segments[next] = CONTEXT_SEGMENT | (c as u32 + 1);
                    batch.targets[next] = cont[u + 1];
                    next += 1;
                }
                row_spans.push(start..next);
            }
            spans.push(row_spans);
        }
        let losses = model.forward(&mut ws, &batch)?.to_vec();
        for ((r, &g), row_spans) in chunk.iter().enumerate().zip(&spans) {
            let Group { context, continuations } = &groups[g];
            let first_row = ws.logits_row(r * seq + context.len() - 1, vocab).expect("target positions have logits");
            out[g] = continuations
                .iter()
                .zip(row_spans)
                .map(|(cont, span)| {
                    let (mut ll, mut greedy) = log_prob(first_row, cont[0]);
                    for p in span.clone() {
                        ll -= losses[p] as f64;
                        let row = ws.logits_row(p, vocab).expect("target positions have logits");
                        greedy &= log_prob(row, batch.targets[p]).1;
                    }
                    LogLik { ll, is_greedy: greedy }
                })
                .collect();
        }
        progress.advance(chunk.len(), chunk.iter().map(|&g| groups[g].len()).sum());
    }
    Ok(out)
}
