//! Same seed and thread count → the same bits after several steps.

use keel_data::batching::Collated;
use keel_kernels::adamw::AdamWHyper;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::optim::AdamW;
use keel_model::rng::Rng;
use keel_model::{Batch, ModelConfig, Transformer, Workspace};
use keel_train::objective::Objective;
use keel_train::step::Trainer;

fn config() -> ModelConfig {
    ModelConfig::from_hf_json(&serde_json::json!({"model_type": "qwen2", "hidden_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 72, "vocab_size": 300}))
    .unwrap()
}

fn batch(seed: u64) -> Batch {
    let (b, t) = (4, 40); // 160 rows: several reduction chunks
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..b * t).map(|_| rng.below(300) as u32).collect();
    Batch {
        batch: b,
        seq: t,
        targets: (0..b * t).map(|i| if i % t == t - 1 { IGNORE } else { ids[i + 1] }).collect(),
        ids,
        positions: (0..b * t).map(|i| (i % t) as u32).collect(),
        segments: vec![1; b * t],
    }
}

fn train(seed: u64, steps: usize) -> Vec<f32> {
    let mut model = Transformer::init_random(config(), seed, 0.05);
    let hyper = AdamWHyper { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    let mut trainer = Trainer {
        workspace: Workspace::new(&model.config, 4, 40, false).unwrap(),
        grads: vec![0.0; model.layout.total],
        optimizer: AdamW::new(model.layout.total, hyper),
        max_grad_norm: 1.0,
        objective: Objective::Ce,
        batch_scope: true,
        flow_coefficients: None,
        l2: None,
    };
    for step in 0..steps {
        let batch = batch(seed * 1000 + step as u64);
        let example_of = batch
            .targets
            .iter()
            .enumerate()
            .map(|(i, &t)| if t == IGNORE { usize::MAX } else { i / batch.seq })
            .collect();
        trainer.optimizer_step(&mut model, &[Collated { batch, example_of }], hyper.lr, step as u64).unwrap();
    }
    model.params
}

#[test]
fn same_seed_and_threads_give_bit_identical_weights() {
    let a = train(7, 4);
    let b = train(7, 4);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "two runs with one seed differ");
    let c = train(8, 4);
    assert!(a != c, "a different seed must give different weights");
}
