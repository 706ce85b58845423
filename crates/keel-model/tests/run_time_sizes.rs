//! Run-time sizes (issue 12, defect 7): a huge sequence length or micro-batch, a sequence past
//! the model's context length, or a token id past its vocabulary is an error, not an abort,
//! a "capacity overflow" panic or an out-of-bounds index.

use keel_kernels::cross_entropy::IGNORE;
use keel_model::{Batch, ModelConfig, Transformer, Workspace};

fn tiny() -> ModelConfig {
    ModelConfig::from_hf_json(&serde_json::json!({"model_type": "llama", "hidden_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 50,
        "max_position_embeddings": 64}))
    .unwrap()
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_huge_sequence_length_or_micro_batch_is_refused() {
    let mut c = tiny();
    let err = err_of(Workspace::new(&c, 1, 1_000_000_000, false));
    assert!(err.contains("1000000000 tokens") && err.contains("context length of 64"), "{err}");
    c.max_position_embeddings = usize::MAX;
    let err = err_of(Workspace::new(&c, 4, 1_000_000_000, false));
    assert!(err.contains("4 × 1000000000") && err.contains("more than this machine's"), "{err}");
    let err = err_of(Workspace::new(&c, 1_000_000, 64, true));
    assert!(err.contains("1000000 × 64") && err.contains("more than this machine's"), "{err}");
    let err = err_of(Workspace::new(&c, usize::MAX, usize::MAX, false));
    assert!(err.contains("more than this machine's"), "{err}");
}

fn batch(ids: Vec<u32>) -> Batch {
    let t = ids.len();
    Batch { batch: 1, seq: t, ids, positions: (0..t as u32).collect(), segments: vec![1; t], targets: vec![IGNORE; t] }
}

#[test]
fn forward_checks_the_context_length_and_the_vocabulary() {
    let mut model = Transformer::init_random(tiny(), 0, 0.02);
    let mut ws = Workspace::new(&model.config, 1, 8, false).unwrap();
    assert!(model.forward(&mut ws, &batch(vec![1, 2, 3])).is_ok());
    let err = err_of(model.forward(&mut ws, &batch(vec![1, 50, 3])));
    assert!(err.contains("token id 50") && err.contains("vocabulary of 50"), "{err}");
    model.config.max_position_embeddings = 2;
    let err = err_of(model.forward(&mut ws, &batch(vec![1, 2, 3])));
    assert!(err.contains("3 tokens") && err.contains("context length of 2"), "{err}");
}
