//! The weights after 5 steps of every objective on the tiny model, pinned bit for bit.
//!
//! `fixtures/same_bits.json` was written by the training code as it stood before the
//! reorganization into one optimizer step (commit 22141a1); any change to what a step computes
//! changes a hash here. `KEEL_BLESS=1 cargo test -p keel-train --test same_bits` rewrites it, and
//! only a change that is meant to alter the numbers should.

use keel_testkit as tiny;

use keel_model::Transformer;
use keel_train::checkpoint::fingerprint;
use keel_train::config::RunConfig;
use keel_train::run::{train, RunOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Each objective with the settings that exercise its whole path: TALR accumulates over two
/// micro-batches (the batch-wide prepass), LoRA draws dropout masks.
const RUNS: [(&str, &[&str], &str); 6] = [
    ("ce", &["train.objective=ce"], ""),
    ("talr", &["train.objective=talr", "train.grad_accum=2", "train.micro_batch_size=2"], ""),
    ("dft", &["train.objective=dft"], ""),
    ("flow", &["train.objective=flow"], ""),
    ("l2", &["train.objective=ce", "train.l2_init=0.1"], ""),
    ("lora", &["train.objective=ce"], "[lora]\nrank = 4\nalpha = 8.0\ndropout = 0.1\nlr = 3e-3\n"),
];

fn hash_f32(v: &[f32]) -> String {
    fingerprint(v.iter().flat_map(|x| x.to_bits().to_le_bytes()))
}

#[test]
fn five_steps_of_every_objective_give_the_pinned_weights() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("same_bits");
    let _ = std::fs::remove_dir_all(&root);
    let mut got = BTreeMap::new();
    for (name, overrides, extra) in RUNS {
        let dir = root.join(name);
        let (model, data) = tiny::tiny_setup(&root, &dir, 16);
        let path = dir.join("run.toml");
        std::fs::write(&path, tiny::tiny_config(&model, &data, &dir.join("out"), "") + extra).unwrap();
        let mut o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        o.push("train.max_steps=5".into());
        let c = RunConfig::load(&path, &o).unwrap();
        let s = train(&c, &RunOptions { resume: false, progress: false }).unwrap();
        got.insert(name.to_string(), hash_f32(&Transformer::load(&s.final_dir).unwrap().params));
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/same_bits.json");
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&fixture, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(got, want, "the weights after 5 steps changed");
}
