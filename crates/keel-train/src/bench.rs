//! What `keel bench train` times: named model shapes, random batches, and the trainer of a
//! benchmark step. The step itself is [`Trainer::optimizer_step`], the one `keel train` runs.

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
        other => bail!("unknown shape \"{other}\" (known: smollm2-135m, tiny)"),
    };
    ModelConfig::from_hf_json(&json)
}

/// Random tokens; each position's target is the next token (the last position has none). Each
/// row is its own example.
pub fn random_batch(batch: usize, seq: usize, vocab: usize, seed: u64) -> Collated {
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..batch * seq).map(|_| rng.below(vocab as u64) as u32).collect();
    let targets = (0..batch * seq).map(|i| if i % seq == seq - 1 { IGNORE } else { ids[i + 1] }).collect();
    let example_of = (0..batch * seq).map(|i| if i % seq == seq - 1 { usize::MAX } else { i / seq }).collect();
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
/// clipping at 1.0, `objective`, no L2 or FLOW: the same work as bench/train_step_torch.py.
pub fn bench_trainer(
    model: &Transformer,
    batch_rows: usize,
    seq_len: usize,
    grad_checkpointing: bool,
    objective: Objective,
) -> Result<Trainer> {
    let hyper = AdamWHyper { lr: BENCH_LR, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    let trainable = model.num_trainable();
    Ok(Trainer {
        workspace: Workspace::new(&model.config, batch_rows, seq_len, grad_checkpointing)?,
        grads: vec![0.0f32; trainable],
        optimizer: AdamW::new(trainable, hyper),
        max_grad_norm: 1.0,
        objective,
        batch_scope: true,
        flow_coefficients: None,
        l2: None,
    })
}
