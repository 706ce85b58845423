//! What `keel bench train` times: named model shapes, random batches, and the trainer of a
//! benchmark step. The step itself is [`Trainer::optimizer_step`], the one `keel train` runs.
//!
//! By default every position but each row's last has a target and the LM head runs at every
//! position: the same work as bench/train_step_torch.py. With [`LossOn::LastHalf`] only each
//! row's second half is scored (as in SFT, where the prompt carries no loss) and the LM head runs
//! only there ([`Workspace::logits_at_targets_only`], as `keel train` does); the twin's
//! `--loss-on last-half` does the same.

use crate::objective::Objective;
use crate::step::Trainer;
use anyhow::{bail, Result};
use keel_data::batching::Collated;
use keel_kernels::adamw::AdamWHyper;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::optim::AdamW;
use keel_model::rng::Rng;
use keel_model::{Batch, ModelConfig, Transformer, Workspace};

/// The benchmark's learning rate (the PyTorch twin's).
pub const BENCH_LR: f64 = 1e-4;

/// A named model shape for benchmarks.
pub fn shape_config(name: &str) -> Result<ModelConfig> {
    let json = match name {
        "smollm2-135m" => serde_json::json!({"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true, "max_position_embeddings": 8192}),
        "tiny" => serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}),
        // Gemma-3-270M (google/gemma-3-270m's config.json): a full-attention layer every sixth.
        "gemma3-270m" => serde_json::json!({"model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 2048,
            "vocab_size": 262144, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10000.0,
            "sliding_window": 512, "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
            "layer_types": (0..18).map(|l| if l % 6 == 5 { "full_attention" } else { "sliding_attention" }).collect::<Vec<_>>(),
            "tie_word_embeddings": true, "max_position_embeddings": 32768}),
        other => bail!("unknown shape \"{other}\" (known: smollm2-135m, gemma3-270m, tiny)"),
    };
    ModelConfig::from_hf_json(&json)
}

/// Which positions of a benchmark batch carry a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossOn {
    /// Every position but each row's last.
    All,
    /// Positions `seq/2 − 1 .. seq − 1` of each row: the tokens of the second half are predicted,
    /// `seq/2` targets per row.
    LastHalf,
}

impl LossOn {
    /// Whether position `t` of a `seq`-token row has a target.
    fn has_target(self, t: usize, seq: usize) -> bool {
        t + 1 < seq && (self == LossOn::All || t + 1 >= seq / 2)
    }
}

/// Random tokens; each position's target is the next token (the last position has none, and
/// with [`LossOn::LastHalf`] neither has the first half). Each row is its own example.
pub fn random_batch(batch: usize, seq: usize, vocab: usize, seed: u64, on: LossOn) -> Collated {
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..batch * seq).map(|_| rng.below(vocab as u64) as u32).collect();
    let targets = (0..batch * seq).map(|i| if on.has_target(i % seq, seq) { ids[i + 1] } else { IGNORE }).collect();
    let example_of = (0..batch * seq).map(|i| if on.has_target(i % seq, seq) { i / seq } else { usize::MAX }).collect();
    let batch = Batch {
        batch,
        seq,
        positions: (0..batch * seq).map(|i| (i % seq) as u32).collect(),
        segments: vec![1; batch * seq],
        ids,
        targets,
    };
    Collated { batch, example_of }
}

/// The trainer of a benchmark step: AdamW (lr [`BENCH_LR`], weight decay 0.1 on matrices),
/// clipping at 1.0, `objective`, no L2 or FLOW: the same work as bench/train_step_torch.py. With
/// [`LossOn::LastHalf`] the LM head runs at the target positions only, as in `keel train`.
pub fn bench_trainer(
    model: &Transformer,
    batch_rows: usize,
    seq_len: usize,
    grad_checkpointing: bool,
    objective: Objective,
    on: LossOn,
) -> Result<Trainer> {
    let hyper = AdamWHyper { lr: BENCH_LR, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    let trainable = model.num_trainable();
    let mut workspace = Workspace::new(&model.config, batch_rows, seq_len, grad_checkpointing)?;
    workspace.logits_at_targets_only = on == LossOn::LastHalf;
    Ok(Trainer {
        workspace,
        grads: vec![0.0f32; trainable],
        optimizer: AdamW::new(trainable, hyper),
        max_grad_norm: 1.0,
        objective,
        batch_scope: true,
        flow_coefficients: None,
        l2: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::config::LayerKind;

    #[test]
    fn gemma3_270m_is_google_s_shape() {
        let c = shape_config("gemma3-270m").unwrap();
        let full: Vec<usize> = (0..c.num_layers).filter(|&l| c.layer_kinds[l] == LayerKind::Full).collect();
        assert_eq!(full, [5, 11, 17]);
        assert_eq!((c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim), (640, 4, 1, 256));
        assert_eq!((c.vocab_size, c.sliding_window, c.rope_local_theta), (262144, Some(512), Some(10000.0)));
        assert!(c.tie_word_embeddings && c.rope_theta == 1e6 && c.attn_scale() == 1.0 / 16.0);
        assert!(shape_config("gemma").unwrap_err().to_string().contains("gemma3-270m"));
    }

    #[test]
    fn last_half_scores_seq_over_2_positions_per_row() {
        let on = |l: LossOn, seq: usize| (0..seq).filter(|&t| l.has_target(t, seq)).collect::<Vec<_>>();
        assert_eq!(on(LossOn::All, 8), (0..7).collect::<Vec<_>>());
        assert_eq!(on(LossOn::LastHalf, 8), [3, 4, 5, 6]);
        assert_eq!(on(LossOn::LastHalf, 256).len(), 128);
    }
}
