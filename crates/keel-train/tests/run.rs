//! Whole training runs on a tiny model with the real tokenizer.

use keel_testkit as tiny;

use keel_model::Transformer;
use keel_train::config::RunConfig;
use keel_train::run::{train, RunOptions};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &std::path::Path, n: usize, extra: &str, overrides: &[&str]) -> RunConfig {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run");
    let (model, data) = tiny::tiny_setup(&shared, dir, n);
    let path = dir.join("run.toml");
    std::fs::write(&path, tiny::tiny_config(&model, &data, &dir.join("out"), extra)).unwrap();
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    RunConfig::load(&path, &o).unwrap()
}

const QUIET: RunOptions = RunOptions { resume: false, progress: false };

#[test]
fn every_objective_lowers_the_training_loss() {
    let dir = scratch("objectives");
    for (objective, extra) in [("ce", ""), ("talr", ""), ("dft", ""), ("flow", ""), ("ce", "l2_init = 0.1")] {
        let mut c = config(&dir, 16, extra, &[&format!("train.objective={objective}")]);
        c.output.dir = dir.join(format!("out-{objective}-{}", extra.len()));
        let s = train(&c, &QUIET).unwrap();
        assert!(s.last_ce < s.first_ce, "{objective} {extra}: cross-entropy {} → {}", s.first_ce, s.last_ce);
        let metrics = std::fs::read_to_string(c.output.dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 6);
        if objective == "talr" {
            assert!(metrics.contains("\"tau\"") && metrics.contains("\"at_floor\""));
        }
        if objective == "flow" {
            assert!(c.output.dir.join("flow_weights.json").exists(), "FLOW caches its weights beside the run");
        }
        Transformer::load(&s.final_dir).unwrap();
    }
}

#[test]
fn talr_over_accumulated_micro_batches_equals_one_big_batch() {
    let dir = scratch("accumulation");
    // eps = 1 makes AdamW's first update proportional to the gradient (with the default eps it
    // is lr·sign(g), which turns rounding noise in near-zero gradients into full-size steps).
    let run = |mbs: &str, accum: &str, scope: &str, name: &str| {
        let mut c = config(
            &dir,
            8,
            "",
            &[
                &format!("train.micro_batch_size={mbs}"),
                &format!("train.grad_accum={accum}"),
                "train.max_steps=1",
                "train.eps=1.0",
                "train.lr=1.0",
                &format!("talr.scope={scope}"),
            ],
        );
        c.output.dir = dir.join(name);
        train(&c, &QUIET).unwrap();
        Transformer::load(&c.output.dir.join("final")).unwrap().params
    };
    let big = run("8", "1", "batch", "one");
    let accumulated = run("2", "4", "batch", "four");
    let per_micro_batch = run("2", "4", "micro_batch", "four-micro");
    let initial = Transformer::load(&dir.join("../tiny-model")).unwrap().params;
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    let moved = max_diff(&big, &initial);
    assert!(moved > 1e-3, "the step moved the weights");
    let diff = max_diff(&big, &accumulated);
    assert!(diff < 1e-4 * moved, "one batch of 8 and 4 × 2 accumulated differ by {diff} (update size {moved})");
    // The micro-batch scope is a different objective: its update differs visibly.
    assert!(max_diff(&big, &per_micro_batch) > 100.0 * diff.max(1e-9), "micro-batch scope should differ");
}

#[test]
fn bad_data_stops_before_training_with_file_and_line() {
    let dir = scratch("bad_data");
    let c = config(&dir, 4, "", &[]);
    let mut text = std::fs::read_to_string(&c.data.path).unwrap();
    text.push_str("{\"prompt\": \"no completion\"}\n");
    std::fs::write(&c.data.path, &text).unwrap();
    let err = format!("{:#}", train(&c, &QUIET).err().unwrap());
    assert!(err.contains("data.jsonl:5") && err.contains("completion"), "{err}");
    std::fs::write(&c.data.path, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{oops\n").unwrap();
    let err = format!("{:#}", train(&c, &QUIET).err().unwrap());
    assert!(err.contains("data.jsonl:2") && err.contains("not valid JSON"), "{err}");
    assert!(!c.output.dir.join("final").exists());
}

#[test]
fn existing_checkpoints_are_never_overwritten_without_resume() {
    let dir = scratch("no_overwrite");
    let c = config(&dir, 8, "", &["train.max_steps=2"]);
    train(&c, &QUIET).unwrap();
    let err = format!("{:#}", train(&c, &QUIET).err().unwrap());
    assert!(err.contains("--resume"), "{err}");
    // A checkpoint from another configuration is refused, and nothing is written.
    let other = config(&dir, 8, "", &["train.max_steps=4", "train.lr=1e-3"]);
    let before = keel_train::checkpoint::list(&other.output.dir).unwrap();
    let err = format!("{:#}", train(&other, &RunOptions { resume: true, progress: false }).err().unwrap());
    assert!(err.contains("different configuration"), "{err}");
    assert_eq!(before, keel_train::checkpoint::list(&other.output.dir).unwrap());
}

/// Runs `f` with a small tmpfs mounted at `dir`; skipped (with a note) where mounting is not
/// permitted (it needs root, as CI has).
fn with_small_disk(dir: &std::path::Path, megabytes: usize, f: impl FnOnce()) {
    std::fs::create_dir_all(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the disk-full test: cannot mount a tmpfs here (needs root)");
        return;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let _ = std::process::Command::new("umount").arg(dir).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_full_disk_while_checkpointing_leaves_the_previous_checkpoint_intact() {
    let dir = scratch("disk_full");
    let mut c = config(&dir, 8, "", &["train.max_steps=3", "output.save_every=1", "output.keep_last=3"]);
    let disk = dir.join("small-disk");
    c.output.dir = disk.join("out");
    // One checkpoint of the tiny model takes about 40 MB (weights and both AdamW moments).
    with_small_disk(&disk, 60, || {
        let err = format!("{:#}", train(&c, &QUIET).expect_err("the second checkpoint cannot fit"));
        assert!(err.contains("checkpoint-00000002") && err.contains("earlier checkpoints are untouched"), "{err}");
        let left = keel_train::checkpoint::list(&c.output.dir).unwrap();
        assert_eq!(left.len(), 1, "only the complete first checkpoint remains: {left:?}");
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(left[0].join("state.json")).unwrap()).unwrap();
        assert_eq!(state["step"], 1);
        Transformer::load(&left[0]).expect("the first checkpoint still loads");
        let leftovers: Vec<_> = std::fs::read_dir(&c.output.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no half-written checkpoint is left behind");
    });
}

#[test]
fn lora_trains_only_the_adapter_and_resumes_exactly() {
    let dir = scratch("lora");
    let lora = "[lora]\nrank = 4\nalpha = 8.0\ndropout = 0.1\nlr = 3e-3";
    config(&dir, 16, "", &[]); // writes run.toml and the data
    let path = dir.join("lora.toml");
    std::fs::write(&path, std::fs::read_to_string(dir.join("run.toml")).unwrap() + lora).unwrap();
    let c = RunConfig::load(&path, &["train.max_steps=4".into()]).unwrap();
    let s = train(&c, &QUIET).unwrap();
    assert!(s.last_ce < s.first_ce, "LoRA: cross-entropy {} → {}", s.first_ce, s.last_ce);
    // The final model is the base plus the merged adapter, and nothing else changed.
    let base = Transformer::load(&dir.join("../tiny-model")).unwrap();
    let mut merged = Transformer::load(&dir.join("../tiny-model")).unwrap();
    merged.lora =
        Some(keel_model::lora::LoraAdapter::load(&c.output.dir.join("final-adapter"), &merged.config).unwrap());
    merged.merge_lora();
    let final_model = Transformer::load(&s.final_dir).unwrap();
    assert!(final_model.params == merged.params);
    let embed = base.layout.embed.clone();
    assert!(final_model.params[embed.clone()] == base.params[embed], "the frozen embedding is untouched");

    // Two steps, then --resume to four: the same adapter as the uninterrupted run.
    let mut short = RunConfig::load(&path, &["train.max_steps=2".into()]).unwrap();
    short.output.dir = dir.join("resumed");
    train(&short, &QUIET).unwrap();
    short.train.max_steps = 4;
    train(&short, &RunOptions { resume: true, progress: false }).unwrap();
    let read = |d: &std::path::Path| std::fs::read(d.join("final-adapter/adapter_model.safetensors")).unwrap();
    assert!(read(&short.output.dir) == read(&c.output.dir), "resumed LoRA run differs");
}

#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_its_checkpoints() {
    let dir = scratch("nan");
    // A learning rate this large overflows the weights after the first update.
    let c = config(&dir, 8, "", &["train.lr=1e30", "train.max_steps=5", "output.save_every=1", "output.keep_last=5"]);
    let err = format!("{:#}", train(&c, &QUIET).expect_err("the run must stop"));
    assert!(err.contains("stopping before the update") && err.contains("checkpoint-00000001"), "{err}");
    let metrics = std::fs::read_to_string(c.output.dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 1);
    assert!(
        !keel_train::checkpoint::list(&c.output.dir).unwrap().is_empty(),
        "the checkpoints written before are kept"
    );
    assert!(!c.output.dir.join("final").exists(), "no final model from a diverged run");
}

#[test]
fn a_second_run_on_a_locked_directory_is_refused_with_the_holders_pid() {
    let dir = scratch("lock");
    let c = config(&dir, 8, "", &["train.max_steps=1"]);
    std::fs::create_dir_all(&c.output.dir).unwrap();
    let holder = std::fs::File::create(c.output.dir.join(".keel.lock")).unwrap();
    holder.try_lock().unwrap();
    std::fs::write(c.output.dir.join(".keel.lock"), "4242").unwrap();
    let err = format!("{:#}", train(&c, &QUIET).expect_err("the directory is locked"));
    assert!(err.contains("in use by another keel train (pid 4242)"), "{err}");
    assert!(!c.output.dir.join("metrics.jsonl").exists(), "the refused run wrote nothing");
    drop(holder);
    train(&c, &QUIET).unwrap();
}

#[test]
fn corrupt_optimizer_state_is_refused_on_resume() {
    let dir = scratch("corrupt_moments");
    let mut c = config(&dir, 8, "", &["train.max_steps=2", "output.save_every=1"]);
    train(&c, &QUIET).unwrap();
    let last = keel_train::checkpoint::list(&c.output.dir).unwrap().pop().unwrap();
    let path = last.join("optimizer.safetensors");
    let st = keel_model::safetensors::SafeTensors::open(&path).unwrap();
    let (mut m, mut v) = (st.to_vec_f32("exp_avg").unwrap(), st.to_vec_f32("exp_avg_sq").unwrap());
    drop(st);
    for (name, poison) in [("exp_avg", f32::NAN), ("exp_avg_sq", -1.0)] {
        let (pm, pv) = if name == "exp_avg" { (&mut m, &mut v) } else { (&mut v, &mut m) };
        let saved = pm[7];
        pm[7] = poison;
        let n = pm.len();
        let (m_ref, v_ref) = if name == "exp_avg" { (&*pm, &*pv) } else { (&*pv, &*pm) };
        let meta = std::collections::HashMap::from([("adamw_step".to_string(), "2".to_string())]);
        keel_model::safetensors::write_f32(&path, &[("exp_avg", &[n], m_ref), ("exp_avg_sq", &[n], v_ref)], &meta)
            .unwrap();
        c.train.max_steps = 3;
        let err = format!("{:#}", train(&c, &RunOptions { resume: true, progress: false }).unwrap_err());
        assert!(err.contains("optimizer.safetensors is corrupt") && err.contains(&format!("{name}[7]")), "{err}");
        pm[7] = saved;
    }
}

#[test]
fn a_refused_resume_leaves_the_runs_config_as_it_was() {
    let dir = scratch("refused_resume");
    let mut c = config(&dir, 8, "", &["train.max_steps=1"]);
    train(&c, &QUIET).unwrap();
    let before = std::fs::read(c.output.dir.join("config.json")).unwrap();
    c.train.lr *= 2.0;
    c.train.max_steps = 2;
    let err = format!("{:#}", train(&c, &RunOptions { resume: true, progress: false }).unwrap_err());
    assert!(err.contains("different configuration"), "{err}");
    assert!(std::fs::read(c.output.dir.join("config.json")).unwrap() == before, "config.json was overwritten");
}

#[test]
fn checkpoints_survive_a_resume_of_a_finished_run_and_a_kill_mid_replacement() {
    let dir = scratch("atomic_checkpoints");
    let c = config(&dir, 8, "", &["train.max_steps=2", "output.save_every=1"]);
    train(&c, &QUIET).unwrap();
    let last = keel_train::checkpoint::list(&c.output.dir).unwrap().pop().unwrap();
    let weights = std::fs::read(last.join("model.safetensors")).unwrap();
    let modified = std::fs::metadata(last.join("model.safetensors")).unwrap().modified().unwrap();
    // Resuming a finished run has nothing to save: the newest checkpoint is not rewritten.
    train(&c, &RunOptions { resume: true, progress: false }).unwrap();
    assert_eq!(std::fs::metadata(last.join("model.safetensors")).unwrap().modified().unwrap(), modified);
    // A save killed after moving the old checkpoint aside: the next run puts it back.
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::rename(&last, c.output.dir.join(format!(".{name}.old"))).unwrap();
    let listed = keel_train::checkpoint::list(&c.output.dir).unwrap();
    assert_eq!(listed.last(), Some(&last));
    assert!(std::fs::read(last.join("model.safetensors")).unwrap() == weights);
}
