//! Generation task files: GSM8K and ESCI written as task files (tasks/generation/) give the
//! built-in tasks' prompts, token for token, and their verdicts on real and adversarial answers;
//! through the harness they score the same. `domain:FILE` scores a training file's held-out part.

use keel_eval::gen_file::GenFileTask;
use keel_eval::gen_tasks::{prompt_ids, GenItem, GenTask};
use keel_eval::harness::{self, EvalOptions, PerTask};
use keel_infer::pretrained::Pretrained;
use keel_testkit::{repo_root, shared_data};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn task_file(name: &str) -> GenFileTask {
    GenFileTask::from_file(&repo_root().join("tasks/generation").join(name)).unwrap()
}

/// The ESCI fixture where the built-in task looks for it.
fn esci_data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-file-esci");
    std::fs::create_dir_all(dir.join("esci")).unwrap();
    std::fs::copy(repo_root().join("crates/keel-data/tests/fixtures/esci_sample.jsonl"), dir.join("esci/esci.jsonl"))
        .unwrap();
    dir
}

/// Every answer the study's models gave to GSM8K, and answers written to probe the extraction.
fn gsm8k_answers() -> Vec<String> {
    let mut answers: Vec<String> = [
        "so 48+24=72\n#### 72",
        "The answer is 72.",
        "It costs $1,000 in total.",
        "#### 1,000.",
        "She ends with 1000.",
        "The change is -5 degrees",
        "It is 7, not 8",
        "####72",
        "#### 72\n#### 73",
        "Total: 5.5.",
        "72.\n",
        "",
        "no digits at all",
        "$.",
        "1.2.3",
    ]
    .map(String::from)
    .to_vec();
    for sweep in std::fs::read_dir(repo_root().join("study")).unwrap().flatten() {
        let Ok(cells) = std::fs::read_dir(sweep.path().join("cells")) else { continue };
        for cell in cells.flatten() {
            let Ok(text) = std::fs::read_to_string(cell.path().join("eval/gsm8k.samples.jsonl")) else { continue };
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                answers.push(v["output"].as_str().unwrap().to_string());
            }
        }
    }
    answers
}

/// The built-in task and the task file judge `answers` to the first `n` items alike: the same
/// metrics, passes and (where the file extracts the same text) extracted answers.
fn assert_same_verdicts(builtin: GenTask, file: &GenFileTask, a: &[GenItem], b: &[GenItem], answers: &[String]) {
    let mut passes = 0;
    for (x, y) in a.iter().zip(b) {
        // The same file and line (the built-in 8-shot task names its file relative to the data).
        assert!(y.source.ends_with(&x.source), "{} vs {}", x.source, y.source);
        for answer in answers {
            let (ours, theirs) = (file.score(y, answer), builtin.score(x, answer).unwrap());
            assert_eq!(ours.len(), theirs.len());
            for (o, t) in ours.iter().zip(&theirs) {
                assert_eq!(o.metric, t.metric);
                assert_eq!(o.passed, t.passed, "{}: {} on {answer:?}", x.source, o.metric);
                if builtin != GenTask::Esci {
                    assert_eq!(o.extracted, t.extracted, "{}: {} on {answer:?}", x.source, o.metric);
                }
                passes += o.passed;
            }
        }
    }
    assert!(passes > 0, "no answer passed: the comparison would not notice a scorer that fails everything");
}

#[test]
fn gsm8k_task_files_give_the_built_in_prompts_and_verdicts() {
    let pre = Pretrained::load(&keel_testkit::default_model_path()).unwrap();
    let answers = gsm8k_answers();
    assert!(answers.len() > 100, "the study's GSM8K answers are missing ({})", answers.len());
    for (builtin, file) in [(GenTask::Gsm8k, "gsm8k.toml"), (GenTask::Gsm8kEightShot, "gsm8k_8shot.toml")] {
        let file = task_file(file);
        let (a, b) = (builtin.items(&shared_data()).unwrap(), file.items(&shared_data()).unwrap());
        assert_eq!(a.len(), b.len());
        assert_eq!(file.is_chat(), builtin == GenTask::Gsm8k);
        // Every prompt as text; the first 100 as the token ids the model is given.
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.prompt, &x.shots), (&y.prompt, &y.shots), "{}", x.source);
            assert!(y.source.ends_with(&x.source), "{} vs {}", x.source, y.source);
        }
        let n = 100;
        assert_eq!(
            prompt_ids(&pre, &a[..n], file.is_chat()).unwrap(),
            prompt_ids(&pre, &b[..n], file.is_chat()).unwrap()
        );
        // Each study answer against its own item and against 40 others.
        assert_same_verdicts(builtin, &file, &a[..40], &b[..40], &answers);
        assert_eq!(file.primary_metric(), builtin.primary_metric());
    }
}

#[test]
fn esci_task_file_gives_the_built_in_prompts_and_verdicts() {
    let pre = Pretrained::load(&keel_testkit::default_model_path()).unwrap();
    let data = esci_data_dir();
    let file = task_file("esci.toml");
    let (a, b) = (GenTask::Esci.items(&data).unwrap(), file.items(&data).unwrap());
    assert_eq!(a.len(), 5);
    assert!(a.iter().zip(&b).all(|(x, y)| x.prompt == y.prompt), "prompts differ");
    assert_eq!(prompt_ids(&pre, &a, true).unwrap(), prompt_ids(&pre, &b, true).unwrap());
    let answers: Vec<String> = [
        "The product is a match.\nAnswer: Exact",
        "Answer: s",
        "Answer: **Complement**",
        "Irrelevant.",
        "Answer: maybe",
        "",
        "Answer: E\nAnswer: irrelevant",
        "I think it is C",
        "Answer: exactly",
        "answer: Substitute",
        "Answer:",
    ]
    .map(String::from)
    .to_vec();
    assert_same_verdicts(GenTask::Esci, &file, &a, &b, &answers);
}

fn options(suites: &[&str], out: &Path, data_dir: &Path, holdout: f64) -> EvalOptions {
    EvalOptions {
        suites: suites.iter().map(|s| s.to_string()).collect(),
        limit: PerTask::from_args(&["3".into()], "limit").unwrap(),
        seed: 0,
        data_dir: data_dir.to_path_buf(),
        out: out.to_path_buf(),
        batch_rows: 4,
        max_new_tokens: PerTask::from_args(&["12".into()], "max-new-tokens").unwrap(),
        baseline: None,
        holdout,
    }
}

#[test]
fn through_the_harness_task_files_score_what_the_built_in_tasks_score() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-file-harness");
    let (model, _) = keel_testkit::tiny_setup(&tmp, &tmp.join("data"), 4);
    let pre = Pretrained::load(&model).unwrap();
    let dir = |f: &str| repo_root().join("tasks/generation").join(f).display().to_string();
    let suites = ["gsm8k", &dir("gsm8k.toml"), "gsm8k_8shot", &dir("gsm8k_8shot.toml")];
    let results =
        harness::run(&pre, serde_json::json!({}), &options(&suites, &tmp.join("out"), &shared_data(), 0.0)).unwrap();
    let samples = |task: &str| -> Vec<Value> {
        std::fs::read_to_string(tmp.join(format!("out/{task}.samples.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for (builtin, file) in [("gsm8k", "gsm8k_file"), ("gsm8k_8shot", "gsm8k_8shot_file")] {
        let (x, y) = (&results["tasks"][builtin], &results["tasks"][file]);
        for key in ["n", "strict_match", "flexible_match", "generated_tokens", "primary_metric"] {
            assert_eq!(x[key], y[key], "{builtin} vs {file}: {key}");
        }
        let outputs = |t: &str| samples(t).iter().map(|s| s["output"].clone()).collect::<Vec<_>>();
        assert_eq!(outputs(builtin), outputs(file), "{builtin}: the same answers");
    }
}

#[test]
fn domain_file_scores_the_held_out_part_of_a_training_file_with_its_code_length() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-file-domain");
    let (model, data) = keel_testkit::tiny_setup(&tmp, &tmp.join("data"), 60);
    let pre = Pretrained::load(&model).unwrap();
    let examples = keel_data::dataset::read_examples(
        &data,
        keel_data::dataset::Format::PromptCompletion,
        keel_data::dataset::Target::Cot,
        &Default::default(),
    )
    .unwrap();
    let held = keel_data::holdout::split(examples, 0.25).1;
    assert!(!held.is_empty());
    let suite = format!("domain:{}", data.display());
    let mut opts = options(&[&suite], &tmp.join("out"), Path::new("/nonexistent"), 0.25);
    opts.limit = PerTask::from_args(&["0".into()], "limit").unwrap();
    let results = harness::run(&pre, serde_json::json!({}), &opts).unwrap();
    let entry = &results["tasks"]["data"];
    assert_eq!(entry["n"], held.len(), "{entry}");
    assert_eq!(entry["primary_metric"], "exact_match");
    assert!(entry["exact_match"].as_f64().is_some());
    assert!(entry["code_length"].as_f64().unwrap() > 0.0 && entry["code_length_tokens"].as_u64().unwrap() > 0);
    let sources: Vec<String> = std::fs::read_to_string(tmp.join("out/data.samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources, held.iter().map(|e| e.source.clone()).collect::<Vec<_>>());

    // Without the fraction training held out, the held-out part is unknown: refused.
    opts.holdout = 0.0;
    let err = format!("{:#}", harness::run(&pre, serde_json::json!({}), &opts).unwrap_err());
    assert!(err.contains("--holdout") && err.contains("data.holdout"), "{err}");
    let err = format!(
        "{:#}",
        harness::run(&pre, serde_json::json!({}), &options(&["domain:nowhere.jsonl"], &tmp, &tmp, 0.1)).unwrap_err()
    );
    assert!(err.contains("nowhere.jsonl") && err.contains("not a file"), "{err}");
}
