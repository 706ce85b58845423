//! The `keel` binary as a user meets it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// keel run from the repository root, reading the data sets from the shared copy (the default
/// data directory, ./data, is filled only by `keel data fetch`).
fn keel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env("KEEL_DATA", keel_testkit::shared_data());
    c
}

#[test]
fn generate_answers_the_capital_question() {
    let out = keel()
        .args(["generate", "--chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Paris"));
}

#[test]
fn the_model_rounded_to_16_bits_still_answers_the_capital_question() {
    for dtype in ["f16", "bf16"] {
        let out = keel()
            .args(["generate", "--chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "20"])
            .args(["--dtype", dtype])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Paris"),
            "{dtype}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn interactive_chat_survives_bad_input_lines() {
    let mut child = keel()
        .args(["chat", "--max-new-tokens", "12"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\xff\xfe not utf-8\n\n/reset\nWhat is the capital of France?\n/exit\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot read the input"), "{stderr}");
    assert!(stdout.contains("Paris"), "the conversation went on: {stdout}");
}

#[test]
fn missing_models_and_bad_options_are_clear_errors() {
    let out = keel().args(["generate", "--model", "no/such/model.gguf", "--prompt", "x"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/model.gguf") && err.contains("does not exist"), "{err}");

    let out = keel().args(["convert", "Cargo.toml", "/tmp/keel-never"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GGUF file"));

    let out = keel().args(["generate", "--prompt", "x", "--top-p", "0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top-p"));

    let out = keel().args(["bench", "train", "--shape", "nope"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown shape \"nope\""));
}

#[test]
fn eval_writes_results_and_samples_for_both_task_kinds() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("eval-cli");
    let _ = std::fs::remove_dir_all(&out);
    let run = keel()
        .args(["eval", "--tasks", "arc_easy,gsm8k", "--limit", "2", "--max-new-tokens", "24", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let arc = &results["tasks"]["arc_easy"];
    assert!(arc["acc"].is_number() && arc["acc_norm"].is_number() && arc["n"] == 2);
    let gsm = &results["tasks"]["gsm8k"];
    assert!(gsm["strict_match"].is_number() && gsm["flexible_match"].is_number());
    let samples = std::fs::read_to_string(out.join("gsm8k.samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 2);
    assert!(samples.contains("\"output\"") && samples.contains("\"flexible_match_extracted\""));
    // Both are general-suite tasks: the general score is the mean of their primary metrics.
    let mean = (arc["acc"].as_f64().unwrap() + gsm["flexible_match"].as_f64().unwrap()) / 2.0;
    assert_eq!(results["general_score"]["mean"].as_f64().unwrap(), mean);

    // The same model against itself as the baseline: every delta is zero.
    let again = out.join("again");
    let run = keel()
        .args(["eval", "--suite", "arc_easy", "--limit", "2", "--baseline"])
        .arg(out.join("results.json"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("acc +0.0000"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["baseline"]["deltas"]["arc_easy"]["acc"], 0.0);
    // A baseline scored on other items is refused before any work.
    let other = keel()
        .args(["eval", "--suite", "arc_easy", "--limit", "3", "--baseline"])
        .arg(out.join("results.json"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("different items"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    let bad = keel().args(["eval", "--tasks", "hellaswag"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown task \"hellaswag\""));
    let missing = keel().args(["eval", "--tasks", "boolq", "--data-dir", "/nonexistent"]).output().unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("/nonexistent/boolq/boolq.jsonl") && err.contains("--data-dir"), "{err}");
}

#[test]
fn esci_eval_reads_the_documented_format() {
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("esci-data");
    std::fs::create_dir_all(data.join("esci")).unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keel-data/tests/fixtures/esci_sample.jsonl"),
        data.join("esci/esci.jsonl"),
    )
    .unwrap();
    let out = data.join("out");
    let run = keel()
        .args(["eval", "--tasks", "esci", "--max-new-tokens", "16", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["tasks"]["esci"]["n"], 5);
    assert!(results["tasks"]["esci"]["accuracy"].is_number());
    let missing = keel().args(["eval", "--tasks", "esci"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("esci/esci.jsonl"));
}

#[test]
fn analyze_reports_code_length_and_zero_delta_for_the_base_itself() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("analysis");
    let _ = std::fs::remove_dir_all(&out);
    let run = keel()
        .args([
            "analyze",
            "--base",
            "models/SmolLM2-135M-Instruct.Q4_1.gguf",
            "--data",
            &keel_testkit::shared_data().join("gsm8k/test.jsonl").display().to_string(),
            "--format",
            "gsm8k",
            "--limit",
            "3",
            "--general",
            "2",
            "--hardest",
            "5",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(r["domain"]["delta_l"], 0.0, "a model measured against itself");
    assert_eq!(r["general"]["delta_l"], 0.0);
    let report = &r["domain"]["model"];
    assert!(report["mean_nll"].as_f64().unwrap() > 0.0);
    assert_eq!(
        report["histogram"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum::<u64>(),
        report["tokens"].as_u64().unwrap()
    );
    assert_eq!(report["hardest"].as_array().unwrap().len(), 5);
    assert!(out.join("general_responses.json").exists(), "the base's general responses are cached");
}

/// --general-data measures a file's responses: the same file as --data gives the domain's mean NLL.
#[test]
fn analyze_measures_general_references_from_a_file_and_needs_a_base_for_them() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("analysis-general-data");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let refs = dir.join("refs.jsonl");
    let lines = [
        r#"{"prompt": "Name a primary colour.", "completion": "Red is a primary colour."}"#,
        r#"{"prompt": "What do bees make?", "completion": "Bees make honey and wax."}"#,
        r#"{"prompt": "Say hello in French.", "completion": "Bonjour."}"#,
    ];
    std::fs::write(&refs, lines.join("\n") + "\n").unwrap();
    let analyze = |extra: &[&str]| {
        keel()
            .args(["analyze", "--data"])
            .arg(&refs)
            .args(["--format", "prompt_completion", "--general-data"])
            .arg(&refs)
            .args(extra)
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .unwrap()
    };
    let run = analyze(&["--base", "models/SmolLM2-135M-Instruct.Q4_1.gguf", "--general", "2"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/analysis.json")).unwrap()).unwrap();
    let general = &r["general"];
    assert_eq!(general["responses"], refs.display().to_string());
    assert_eq!((general["examples"].as_u64(), general["delta_l"].as_f64()), (Some(2), Some(0.0)));
    let run = analyze(&["--base", "models/SmolLM2-135M-Instruct.Q4_1.gguf"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/analysis.json")).unwrap()).unwrap();
    assert_eq!(r["general"]["examples"], 3, "--general 0 with a file: all of it");
    assert_eq!(r["general"]["model_mean_nll"], r["domain"]["model"]["mean_nll"], "the same responses");

    let run = analyze(&[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("pass --base"), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn keel_runs_the_blas_kernels_of_this_cpu_where_openblas_falls_back_to_generic_ones() {
    let run = keel()
        .args(["bench", "train", "--shape", "tiny", "--batch-rows", "1", "--seq-len", "8", "--steps", "1", "--json"])
        .env_remove("OPENBLAS_CORETYPE")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let chosen = keel_kernels::gemm::blas_core();
    let want = if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        chosen // this test's own setting: keel keeps it
    } else {
        keel_kernels::gemm::better_blas_core().map_or(chosen, str::to_string)
    };
    assert_eq!(line["blas_kernels"], want.as_str());
}

#[test]
fn bench_train_times_the_optimizer_step_keel_train_runs() {
    use keel_train::bench::{bench_trainer, random_batch, shape_config, LossOn};
    use keel_train::objective::{talr::TalrConfig, Objective};
    // The same OpenBLAS kernels as this process, so that the losses can agree to the bit.
    let run = keel()
        .args(["bench", "train", "--shape", "tiny", "--batch-rows", "2", "--seq-len", "16", "--steps", "2"])
        .args(["--objective", "talr", "--threads", "2", "--json"])
        .env("OPENBLAS_CORETYPE", keel_kernels::gemm::blas_core())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let benched: Vec<f64> = serde_json::from_value(line["losses"].clone()).unwrap();

    keel_kernels::parallel::init_threads(2).unwrap();
    let mut model = keel_model::Transformer::init_random(shape_config("tiny").unwrap(), 0, 0.02);
    let talr = Objective::Talr(TalrConfig {
        normalization: keel_train::objective::talr::Normalization::Simplex,
        temperature: keel_train::objective::talr::Temperature::SequenceMedian,
        floor: 0.01,
    });
    let mut trainer = bench_trainer(&model, 2, 16, false, talr, LossOn::All).unwrap();
    let batch = [random_batch(2, 16, model.config.vocab_size, 1, LossOn::All)];
    let ours: Vec<f64> = (0..=2)
        .map(|step| trainer.optimizer_step(&mut model, &batch, keel_train::bench::BENCH_LR, step).unwrap().loss)
        .skip(1)
        .collect();
    assert_eq!(benched, ours, "keel bench train must run Trainer::optimizer_step");
}
