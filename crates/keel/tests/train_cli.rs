//! `keel train` as a process: exact resume after SIGKILL, `keel data inspect`, and a held-out split
//! scored by `keel eval --suite domain:FILE`.

use keel_testkit as tiny;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

fn setup(name: &str, steps: u64) -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train_cli");
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (model, data) = tiny::tiny_setup(&root, &dir, 24);
    let config = dir.join("run.toml");
    let text = tiny::tiny_config(&model, &data, &dir.join("out"), "objective = \"talr\"\ngrad_accum = 2")
        .replace("max_steps = 6", &format!("max_steps = {steps}"))
        .replace("save_every = 2", "save_every = 1");
    std::fs::write(&config, text).unwrap();
    (config, dir.join("out"))
}

fn weights(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("final/model.safetensors")).unwrap()
}

#[test]
fn a_run_killed_at_a_random_step_resumes_to_identical_weights() {
    let steps = 10;
    let (config, out) = setup("uninterrupted", steps);
    let status = keel().args(["train", "--config"]).arg(&config).status().unwrap();
    assert!(status.success());
    let reference = weights(&out);

    let (config, out) = setup("killed", steps);
    // A pseudo-random kill point from the clock: after 1 to 6 checkpoints exist.
    let target =
        1 + (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() % 6) as usize;
    let mut child =
        keel().args(["train", "--config"]).arg(&config).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while keel_train::checkpoint::list(&out).map(|l| l.len()).unwrap_or(0) < target.min(2)
        || std::fs::read_to_string(out.join("metrics.jsonl")).map(|m| m.lines().count()).unwrap_or(0) < target
    {
        assert!(Instant::now() < deadline, "the run made no progress");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.join("final/model.safetensors").exists() || target >= steps as usize, "killed before the end");
    let status = keel().args(["train", "--resume", "--config"]).arg(&config).status().unwrap();
    assert!(status.success());
    assert!(weights(&out) == reference, "resumed run (killed after step {target}) differs from the uninterrupted one");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps_logged: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps_logged, (1..=steps).collect::<Vec<_>>(), "each step logged once");
}

#[test]
fn a_corrupt_checkpoint_is_refused_on_resume() {
    let (config, out) = setup("corrupt", 2);
    assert!(keel().args(["train", "--config"]).arg(&config).status().unwrap().success());
    let last = keel_train::checkpoint::list(&out).unwrap().pop().unwrap();
    let st = last.join("optimizer.safetensors");
    let len = std::fs::metadata(&st).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&st).unwrap().set_len(len / 3).unwrap();
    let before = std::fs::read(last.join("model.safetensors")).unwrap();
    let out_run =
        keel().args(["train", "--resume", "--set", "train.max_steps=4", "--config"]).arg(&config).output().unwrap();
    assert!(!out_run.status.success());
    let err = String::from_utf8_lossy(&out_run.stderr);
    assert!(err.contains("optimizer.safetensors"), "{err}");
    assert_eq!(before, std::fs::read(last.join("model.safetensors")).unwrap(), "nothing overwritten");
}

#[test]
fn data_inspect_shows_the_loss_mask() {
    let (config, _) = setup("inspect", 2);
    let out = keel().args(["data", "inspect", "--examples", "1", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"kept\": 24"), "{text}");
    // The assistant's reply and its end-of-turn token are supervised; the prompt is not.
    assert!(text.contains("<|im_start|>assistant\n[") && text.contains("<|im_end|>\n]"), "{text}");
    assert!(text.contains("<|im_start|>user\nWhat is"), "{text}");
}

/// `data.holdout`: training never reads the held-out examples, and `keel eval --suite
/// domain:FILE --holdout` scores exactly those, with their code length.
#[test]
fn a_held_out_split_is_left_out_of_training_and_scored_by_eval() {
    let (config, out) = setup("holdout", 2);
    let text = std::fs::read_to_string(&config).unwrap().replace("[train]", "holdout = 0.25\n[train]");
    std::fs::write(&config, text).unwrap();
    let data = config.parent().unwrap().join("data.jsonl");
    let examples = keel_data::dataset::read_examples(
        &data,
        keel_data::dataset::Format::PromptCompletion,
        keel_data::dataset::Target::Cot,
        &Default::default(),
    )
    .unwrap();
    let held = keel_data::holdout::split(examples, 0.25).1;
    assert!(!held.is_empty() && held.len() < 24, "{} held out", held.len());

    let inspect = keel().args(["data", "inspect", "--examples", "1", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains(&format!("\"kept\": {}", 24 - held.len())), "{text}");
    let train = keel().args(["train", "--config"]).arg(&config).output().unwrap();
    let log = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{log}");
    assert!(log.contains(&format!("held out {} of 24 examples", held.len())), "{log}");

    let results = config.parent().unwrap().join("eval");
    let eval = keel()
        .args(["eval", "--model"])
        .arg(out.join("final"))
        .arg("--suite")
        .arg(format!("domain:{}", data.display()))
        .args(["--holdout", "0.25", "--max-new-tokens", "8", "--out"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["tasks"]["data"]["n"], held.len());
    assert!(r["tasks"]["data"]["code_length"].as_f64().is_some());
}
