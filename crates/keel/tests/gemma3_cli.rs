//! Gemma 3 through every command: a tiny random Gemma 3 with Gemma-3-270M's tokenizer and, like
//! that base model, no chat template (runs give it `model.chat_template = "gemma"`) is trained
//! with each objective and with LoRA (rows longer than its sliding window), then evaluated,
//! analyzed, generated from, merged, exported to GGUF, converted back, and swept.

use keel_testkit as kit;
use std::path::{Path, PathBuf};
use std::process::Command;

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gemma3_cli")
}

/// Trains the tiny Gemma for 2 steps with `extra` lines in `[train]` (and `tail` after it);
/// returns the run's output directory.
fn train(name: &str, extra: &str, tail: &str) -> PathBuf {
    let model = kit::tiny_gemma3(&root());
    let dir = root().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let data = kit::tiny_data(&dir, 16);
    let config = format!(
        "[model]\npath = {model:?}\nchat_template = \"gemma\"\n[data]\npath = {data:?}\nformat = \"prompt_completion\"\nmax_seq_len = 64\n\
         [train]\nlr = 1e-3\nschedule = \"constant\"\nmicro_batch_size = 4\nthreads = 2\nseed = 3\nmax_steps = 2\n{extra}\n\
         {tail}\n[output]\ndir = {:?}\nsave_every = 0\n",
        dir.join("out")
    );
    std::fs::write(dir.join("run.toml"), config).unwrap();
    run(keel().args(["train", "--config"]).arg(dir.join("run.toml")));
    dir.join("out")
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &serde_json::Value| m.get("step").is_some() && m.get("ce").is_some())
        .collect()
}

#[test]
fn every_objective_and_lora_train_gemma3() {
    for (name, extra, tail) in [
        ("ce", "objective = \"ce\"", ""),
        ("talr", "objective = \"talr\"", ""),
        ("dft", "objective = \"dft\"", ""),
        ("flow", "objective = \"flow\"", ""),
        ("l2", "objective = \"ce\"\nl2_init = 0.1", ""),
        ("lora", "objective = \"ce\"", "[lora]\nrank = 4"),
    ] {
        let out = train(name, extra, tail);
        let m = metrics(&out);
        assert_eq!(m.len(), 2, "{name}: two steps logged");
        assert!(m.iter().all(|s| s["ce"].as_f64().unwrap().is_finite()), "{name}: {m:?}");
        assert!(out.join("final").exists(), "{name}: the final model");
    }
}

#[test]
fn a_trained_gemma3_evaluates_generates_merges_and_round_trips_through_gguf() {
    let out = train("chain", "objective = \"talr\"", "");
    let base = kit::tiny_gemma3(&root());
    let tuned = out.join("final");
    let work = root().join("chain");
    // The saved model carries the chat format it was trained with.
    let cfg = std::fs::read_to_string(tuned.join("tokenizer_config.json")).unwrap();
    assert!(cfg.contains("start_of_turn"), "the gemma template is saved with the model");

    let eval_dir = work.join("eval");
    run(keel()
        .args(["eval", "--model"])
        .arg(&tuned)
        .args(["--tasks", "arc_easy,gsm8k", "--limit", "2", "--max-new-tokens", "6", "--data-dir"])
        .arg(kit::shared_data())
        .arg("--out")
        .arg(&eval_dir));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("results.json")).unwrap()).unwrap();
    assert!(results.to_string().contains("arc_easy") && results.to_string().contains("gsm8k"), "{results}");

    let analysis = work.join("analysis");
    run(keel()
        .args(["analyze", "--model"])
        .arg(&tuned)
        .arg("--base")
        .arg(&base)
        .args(["--chat-template", "gemma", "--data"])
        .arg(work.join("data.jsonl"))
        .args(["--format", "prompt_completion", "--limit", "3", "--out"])
        .arg(&analysis));
    assert!(analysis.join("analysis.json").exists());

    let text = run(keel().args(["generate", "--model"]).arg(&tuned).args([
        "--chat",
        "--prompt",
        "What is 2 plus 3?",
        "--max-new-tokens",
        "5",
    ]));
    assert!(!text.is_empty());
    // A base model without a template, and an unknown --chat-template, say what to do.
    let chat = |model: &Path, extra: &[&str]| {
        let out = keel()
            .args(["generate", "--model"])
            .arg(model)
            .args(extra)
            .args(["--chat", "--prompt", "Hi", "--max-new-tokens", "2"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = chat(&base, &[]);
    assert!(err.contains("--chat-template gemma|chatml|FILE"), "{err}");
    let err = chat(&base, &["--chat-template", "llama9"]);
    assert!(err.contains("neither a format keel ships (gemma, chatml) nor a file"), "{err}");

    let merged = work.join("merged");
    run(keel()
        .args(["merge", "--base"])
        .arg(&base)
        .arg("--tuned")
        .arg(&tuned)
        .args(["--alpha", "0.5", "--out"])
        .arg(&merged));

    // GGUF out and back: the gemma3 names, Gemma's stored 1 + w norms and the metadata llama.cpp
    // reads give back the same model.
    let gguf = work.join("tuned.gguf");
    run(keel().arg("export").arg(&tuned).arg("--gguf").arg(&gguf).args(["--type", "f32"]));
    let back = work.join("back");
    run(keel().arg("convert").arg(&gguf).arg(&back));
    let (a, mut b) = (keel_model::Transformer::load(&tuned).unwrap(), keel_model::Transformer::load(&back).unwrap());
    assert_eq!(b.config.rms_norm_eps as f32, a.config.rms_norm_eps as f32, "GGUF stores eps as f32");
    b.config.rms_norm_eps = a.config.rms_norm_eps;
    assert_eq!(a.config, b.config);
    for t in &a.layout.tensors {
        let (x, y) = (&a.params[t.range.clone()], &b.params[t.range.clone()]);
        // A norm weight w travels as 1 + w: exact up to the rounding of that sum (2⁻²⁴).
        let tolerance = if t.name.ends_with("norm.weight") { 6e-8 } else { 0.0 };
        let worst = x.iter().zip(y).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(worst <= tolerance, "{} differs by {worst} after the GGUF round trip", t.name);
    }
}

#[test]
fn a_sweep_runs_on_gemma3() {
    let model = kit::tiny_gemma3(&root());
    let dir = root().join("sweep");
    let _ = std::fs::remove_dir_all(&dir);
    let data = kit::tiny_data(&dir, 16);
    let base = dir.join("base.toml");
    let config = format!(
        "[model]\npath = {model:?}\nchat_template = \"gemma\"\n[data]\npath = {data:?}\nformat = \"prompt_completion\"\n\
         max_seq_len = 64\n[train]\nlr = 1e-3\nschedule = \"constant\"\nmicro_batch_size = 4\nthreads = 2\nmax_steps = 2\n\
         [output]\ndir = \"unused\"\n"
    );
    std::fs::write(&base, config).unwrap();
    let sweep = dir.join("sweep.toml");
    let text = format!(
        "base = {base:?}\n[axes]\ntrain.lr = [1e-3]\n\n[[methods]]\nname = \"talr\"\ntrain.objective = \"talr\"\n\n\
         [eval]\ndomain = [\"gsm8k\"]\ngeneral = [\"arc_easy\"]\nlimit = 2\nbatch_rows = 2\nmax_new_tokens = 4\ndata_dir = {:?}\n\n\
         [analyze]\ndomain_limit = 2\ngeneral_limit = 1\nmax_new_tokens = 4\n",
        kit::shared_data()
    );
    std::fs::write(&sweep, text).unwrap();
    let out = dir.join("out");
    run(keel().args(["sweep", "run"]).arg(&sweep).arg("--out").arg(&out));
    run(keel().arg("report").arg(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary.to_string().contains("talr"), "{summary}");
}
