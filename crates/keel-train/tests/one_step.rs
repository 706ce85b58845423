//! `keel train` is its setup plus `Trainer::optimizer_step`: the same steps taken by hand on
//! the same batches give the same bits. If the run loop ever computes a step of its own, this
//! fails.

use keel_data::batching::{collate, BatchPlan, Collated};
use keel_model::Transformer;
use keel_testkit as tiny;
use keel_train::config::RunConfig;
use keel_train::run::{build_trainer, load_data, train, RunOptions};
use keel_train::schedule::learning_rate;
use std::path::PathBuf;

#[test]
fn the_run_loop_is_optimizer_step_on_the_planned_batches() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("one_step");
    let _ = std::fs::remove_dir_all(&dir);
    let (model, data) = tiny::tiny_setup(&dir, &dir, 12);
    let path = dir.join("run.toml");
    std::fs::write(&path, tiny::tiny_config(&model, &data, &dir.join("out"), "")).unwrap();
    let overrides = ["train.objective=talr", "train.grad_accum=2", "train.micro_batch_size=2", "train.max_steps=3"];
    let config = RunConfig::load(&path, &overrides.map(String::from)).unwrap();
    let by_train =
        Transformer::load(&train(&config, &RunOptions { resume: false, progress: false }).unwrap().final_dir)
            .unwrap()
            .params;

    let (mut pre, run_data) = load_data(&config).unwrap();
    let pad_id = pre.tokenizer.eos.as_ref().map(|e| e.0).unwrap_or(0);
    let opts = RunOptions { resume: false, progress: false };
    let mut trainer = build_trainer(&config, &mut pre.model, &run_data, pad_id, &opts).unwrap();
    let examples = &run_data.prepared.examples;
    let lengths: Vec<usize> = examples.iter().map(|e| e.len()).collect();
    let t = &config.train;
    let plan = BatchPlan {
        micro_batch_size: t.micro_batch_size,
        grad_accum: t.grad_accum,
        max_seq_len: config.data.max_seq_len,
        packing: config.data.packing,
        seed: t.seed,
    };
    let epoch = plan.epoch(&lengths, 0);
    for step in 0..t.max_steps {
        let micro: Vec<Collated> = epoch[step as usize].iter().map(|rows| collate(rows, examples, pad_id)).collect();
        let lr = learning_rate(t.schedule, config.peak_lr(), step, t.max_steps, t.warmup_steps);
        trainer.optimizer_step(&mut pre.model, &micro, lr, step).unwrap();
    }
    assert!(pre.model.params.iter().zip(&by_train).all(|(a, b)| a.to_bits() == b.to_bits()), "keel train diverged");
}
