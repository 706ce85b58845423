//! From examples to engine batches: tokenization with loss masks and a declared truncation
//! policy, length-grouped batches or packed rows, and a reproducible order per epoch.

use crate::chat::ChatTemplate;
use crate::dataset::Example;
use crate::mask::{tokenize_conversation, TokenizedExample};
use crate::tokenizer::Tokenizer;
use anyhow::{ensure, Result};
use keel_kernels::cross_entropy::IGNORE;
use keel_model::rng::Rng;
use keel_model::Batch;
use serde::{Deserialize, Serialize};

/// What happens to an example longer than `max_seq_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Skip it (counted).
    Drop,
    /// Keep its first `max_seq_len` tokens (counted; skipped if no supervised token remains).
    Truncate,
}

/// Counts of what preparation did, reported before training.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrepStats {
    /// Examples read.
    pub examples: usize,
    /// Examples kept for training.
    pub kept: usize,
    /// Skipped: no assistant turn, so nothing to learn.
    pub no_assistant_turn: usize,
    /// Skipped: longer than `max_seq_len` under [`Truncation::Drop`].
    pub too_long_dropped: usize,
    /// Cut to `max_seq_len` under [`Truncation::Truncate`] (and kept, unless counted below).
    pub truncated: usize,
    /// Skipped: truncation left no supervised token.
    pub no_target_after_truncation: usize,
    /// Supervised (loss-carrying) tokens of the kept examples.
    pub supervised_tokens: usize,
    /// All tokens of the kept examples.
    pub tokens: usize,
}

/// Tokenized training examples; `source[i]` is the index of `examples[i]` in the input.
pub struct Prepared {
    /// The kept examples, tokenized with their loss masks.
    pub examples: Vec<TokenizedExample>,
    /// For each kept example, its index in the input.
    pub source: Vec<usize>,
    /// What preparation kept, cut and skipped.
    pub stats: PrepStats,
}

/// Tokenizes `examples` with the chat template and applies the length policy; examples without
/// an assistant turn, or without a supervised token after truncation, are skipped and counted.
pub fn prepare(
    examples: &[Example],
    tok: &Tokenizer,
    template: &ChatTemplate,
    max_seq_len: usize,
    policy: Truncation,
) -> Result<Prepared> {
    ensure!(max_seq_len >= 2, "max_seq_len must be at least 2");
    let mut out = Prepared {
        examples: Vec::new(),
        source: Vec::new(),
        stats: PrepStats { examples: examples.len(), ..Default::default() },
    };
    for (i, ex) in examples.iter().enumerate() {
        let Some(mut t) =
            tokenize_conversation(tok, template, &ex.messages).map_err(|e| e.context(ex.source.clone()))?
        else {
            out.stats.no_assistant_turn += 1;
            continue;
        };
        if t.len() > max_seq_len {
            match policy {
                Truncation::Drop => {
                    out.stats.too_long_dropped += 1;
                    continue;
                }
                Truncation::Truncate => {
                    t.ids.truncate(max_seq_len);
                    t.supervised.truncate(max_seq_len);
                    out.stats.truncated += 1;
                }
            }
        }
        // The first token is never a target (nothing predicts it).
        if t.supervised.iter().skip(1).all(|&s| !s) {
            out.stats.no_target_after_truncation += 1;
            continue;
        }
        out.stats.tokens += t.len();
        out.stats.supervised_tokens += t.supervised.iter().skip(1).filter(|&&s| s).count();
        out.examples.push(t);
        out.source.push(i);
    }
    out.stats.kept = out.examples.len();
    Ok(out)
}

/// A row of a micro-batch: one example, or several packed back to back.
pub type Row = Vec<usize>;

/// How examples are grouped into steps.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    /// Rows per micro-batch (one forward and backward).
    pub micro_batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Tokens per row at most (the packing budget).
    pub max_seq_len: usize,
    /// Pack several examples into one row instead of one example per row.
    pub packing: bool,
    /// Seeds the shuffles; each epoch derives its own order from it.
    pub seed: u64,
}

impl BatchPlan {
    /// The optimizer batches of one epoch, each a list of micro-batches of rows. Deterministic in
    /// (seed, epoch); with packing, rows hold several examples; otherwise examples of similar
    /// length share a micro-batch (less padding).
    pub fn epoch(&self, lengths: &[usize], epoch: u64) -> Vec<Vec<Vec<Row>>> {
        let mut rng = Rng::new(self.seed ^ (epoch.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        rng.shuffle(&mut order);
        let rows: Vec<Row> = if self.packing {
            let mut rows: Vec<Row> = Vec::new();
            let mut used = usize::MAX;
            for i in order {
                if used.saturating_add(lengths[i]) > self.max_seq_len {
                    rows.push(Vec::new());
                    used = 0;
                }
                rows.last_mut().expect("a row was opened").push(i);
                used += lengths[i];
            }
            rows
        } else {
            // Sort within chunks of many micro-batches: similar lengths together, order still random.
            let chunk = self.micro_batch_size * self.grad_accum * 16;
            order.chunks_mut(chunk).for_each(|c| c.sort_by_key(|&i| std::cmp::Reverse(lengths[i])));
            order.into_iter().map(|i| vec![i]).collect()
        };
        let micro: Vec<Vec<Row>> = rows.chunks(self.micro_batch_size).map(|c| c.to_vec()).collect();
        let mut steps: Vec<Vec<Vec<Row>>> = micro.chunks(self.grad_accum).map(|c| c.to_vec()).collect();
        rng.shuffle(&mut steps);
        steps
    }
}

/// A micro-batch ready for the engine, and for each position the example its target belongs to
/// (`usize::MAX` where there is no target).
pub struct Collated {
    /// Token ids, targets, segments and positions, `[rows × seq]`.
    pub batch: Batch,
    /// Per position, the index of the example whose target it is (`usize::MAX`: none).
    pub example_of: Vec<usize>,
}

/// Right-pads `rows` to their longest; packed examples get their own segment and positions
/// restarting at 0, so attention never crosses them.
pub fn collate(rows: &[Row], data: &[TokenizedExample], pad_id: u32) -> Collated {
    let seq = rows.iter().map(|r| r.iter().map(|&i| data[i].len()).sum::<usize>()).max().unwrap_or(1).max(1);
    let n = rows.len() * seq;
    let mut c = Collated {
        batch: Batch {
            batch: rows.len(),
            seq,
            ids: vec![pad_id; n],
            positions: vec![0; n],
            segments: vec![0; n],
            targets: vec![IGNORE; n],
        },
        example_of: vec![usize::MAX; n],
    };
    for (r, row) in rows.iter().enumerate() {
        let mut at = r * seq;
        for (k, &i) in row.iter().enumerate() {
            let ex = &data[i];
            for j in 0..ex.len() {
                c.batch.ids[at + j] = ex.ids[j];
                c.batch.positions[at + j] = j as u32;
                c.batch.segments[at + j] = k as u32 + 1;
                if j + 1 < ex.len() && ex.supervised[j + 1] {
                    c.batch.targets[at + j] = ex.ids[j + 1];
                    c.example_of[at + j] = i;
                }
            }
            at += ex.len();
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(len: usize, supervised_from: usize) -> TokenizedExample {
        TokenizedExample {
            ids: (10..10 + len as u32).collect(),
            supervised: (0..len).map(|j| j >= supervised_from).collect(),
        }
    }

    #[test]
    fn collate_shifts_targets_and_separates_packed_examples() {
        let data = vec![ex(4, 2), ex(3, 1)];
        let c = collate(&[vec![0, 1]], &data, 0);
        let b = &c.batch;
        assert_eq!(b.ids, vec![10, 11, 12, 13, 10, 11, 12]);
        assert_eq!(b.positions, vec![0, 1, 2, 3, 0, 1, 2]);
        assert_eq!(b.segments, vec![1, 1, 1, 1, 2, 2, 2]);
        // Token j predicts token j+1 when that one is supervised; never across examples.
        assert_eq!(b.targets, vec![IGNORE, 12, 13, IGNORE, 11, 12, IGNORE]);
        assert_eq!(c.example_of, vec![usize::MAX, 0, 0, usize::MAX, 1, 1, usize::MAX]);
        let padded = collate(&[vec![0], vec![1]], &data, 0);
        assert_eq!(padded.batch.segments, vec![1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(padded.batch.targets[4..], [11, 12, IGNORE, IGNORE]);
    }

    #[test]
    fn epochs_are_reproducible_cover_every_example_and_pack_within_the_limit() {
        let lengths: Vec<usize> = (0..50).map(|i| 5 + (i * 7) % 23).collect();
        for packing in [false, true] {
            let plan = BatchPlan { micro_batch_size: 3, grad_accum: 2, max_seq_len: 40, packing, seed: 5 };
            let a = plan.epoch(&lengths, 0);
            assert_eq!(a, plan.epoch(&lengths, 0));
            assert_ne!(a, plan.epoch(&lengths, 1));
            let mut seen: Vec<usize> = a.iter().flatten().flatten().flatten().copied().collect();
            seen.sort();
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
            for row in a.iter().flatten().flatten() {
                assert!(row.iter().map(|&i| lengths[i]).sum::<usize>() <= 40);
            }
            assert!(a.iter().all(|step| step.len() <= 2 && step.iter().all(|mb| mb.len() <= 3)));
        }
    }
}
