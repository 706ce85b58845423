//! Multiple-choice scoring against transformers computing lm-evaluation-harness's recipe
//! (fixture from tools/make_eval_fixtures.py on the converted SmolLM2-135M-Instruct).
use keel_infer::progress::Progress;

use keel_eval::mc::{encode_pair, evaluate, McTask};
use keel_infer::pretrained::Pretrained;
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> PathBuf {
    keel_testkit::default_model_path()
}

#[test]
fn arc_easy_choices_and_loglikelihoods_match_the_reference() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("crates/keel-eval/tests/fixtures/arc_easy_reference.json")).unwrap(),
    )
    .unwrap();
    let task =
        McTask::from_toml(&std::fs::read_to_string(root().join("tasks/arc_easy.toml")).unwrap(), "arc_easy").unwrap();
    let pre = Pretrained::load(&model_path()).unwrap();
    let want = reference["items"].as_array().unwrap();
    let items: Vec<_> = task.items(&keel_testkit::shared_data()).unwrap().into_iter().take(want.len()).collect();
    let ids = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    for (item, w) in items.iter().zip(want) {
        assert_eq!(item.contexts, [w["context"].as_str().unwrap()]);
        for (c, cont_ids) in w["continuation_ids"].as_array().unwrap().iter().enumerate() {
            let (context, continuation) = item.pair(c);
            let (ctx, cont) = encode_pair(&pre.tokenizer, context, continuation).unwrap();
            assert_eq!(ctx, ids(&w["context_ids"]), "{}: context ids", item.source);
            assert_eq!(cont, ids(cont_ids), "{}: continuation {c} ids", item.source);
        }
    }
    let (results, acc, acc_norm) =
        evaluate(&pre.model, &pre.tokenizer, &task, &items, 8, &mut Progress::quiet()).unwrap();
    for (r, w) in results.iter().zip(want) {
        assert_eq!(r.pred_acc as u64, w["pred_acc"].as_u64().unwrap(), "{}: acc choice", r.source);
        assert_eq!(r.pred_acc_norm as u64, w["pred_acc_norm"].as_u64().unwrap(), "{}: acc_norm choice", r.source);
        for (ours, theirs) in r.loglikelihoods.iter().zip(w["loglikelihoods"].as_array().unwrap()) {
            let theirs = theirs.as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 2e-3 * theirs.abs().max(1.0),
                "{}: log-likelihood {ours} vs {theirs}",
                r.source
            );
        }
        let greedy: Vec<bool> = w["is_greedy"].as_array().unwrap().iter().map(|g| g.as_bool().unwrap()).collect();
        assert_eq!(r.is_greedy, greedy, "{}: is_greedy", r.source);
    }
    assert_eq!(acc, reference["acc"].as_f64().unwrap());
    assert_eq!(acc_norm, reference["acc_norm"].as_f64().unwrap());
}

#[test]
fn task_files_with_bad_gold_indices_or_fields_are_refused_naming_the_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(
        dir.join("mc.jsonl"),
        "{\"q\": \"a\", \"c\": [\"x\", \"y\"], \"g\": 1}\n{\"q\": \"b\", \"c\": [\"x\", \"y\"], \"g\": 2}\n",
    )
    .unwrap();
    let task = McTask::from_toml(
        "name = \"t\"\ndata = \"mc.jsonl\"\ncontext = \"{q}\"\nchoices = { field = \"c\" }\ngold = \"g\"\n",
        "t",
    )
    .unwrap();
    let err = format!("{:#}", task.items(&dir).unwrap_err());
    assert!(err.contains("mc.jsonl:2") && err.contains("gold index 2 is out of range"), "{err}");
    let missing = McTask { context: Some("{nope}".into()), ..task.clone() };
    assert!(format!("{:#}", missing.items(&dir).unwrap_err()).contains("{nope}"));
    let err = format!("{:#}", task.items(&dir.join("nowhere")).unwrap_err());
    assert!(err.contains("nowhere") && err.contains("keel data fetch"), "{err}");
    assert!(McTask::from_toml("name = \"t\"\nbogus = 1\n", "x.toml").is_err());
}

#[test]
fn an_empty_data_file_is_an_error_not_a_score_of_zero() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("empty_eval");
    std::fs::create_dir_all(dir.join("gsm8k")).unwrap();
    std::fs::write(dir.join("empty.jsonl"), "\n").unwrap();
    std::fs::write(dir.join("gsm8k/test.jsonl"), "").unwrap();
    let task = McTask::from_toml(
        "name = \"t\"\ndata = \"empty.jsonl\"\ncontext = \"{q}\"\nchoices = { field = \"c\" }\ngold = \"g\"\n",
        "t",
    )
    .unwrap();
    let err = format!("{:#}", task.items(&dir).unwrap_err());
    assert!(err.contains("empty.jsonl") && err.contains("no items"), "{err}");
    let err = format!("{:#}", keel_eval::gen_tasks::GenTask::Gsm8k.items(&dir).unwrap_err());
    assert!(err.contains("gsm8k/test.jsonl") && err.contains("no examples"), "{err}");
}

#[test]
fn trailing_context_whitespace_moves_to_the_continuation() {
    let pre = Pretrained::load(&model_path()).unwrap();
    let moved = encode_pair(&pre.tokenizer, "Answer: ", "Paris").unwrap();
    assert_eq!(moved, encode_pair(&pre.tokenizer, "Answer:", " Paris").unwrap());
    assert_eq!(moved.1, pre.tokenizer.encode(" Paris", false).unwrap());
}

/// Every item of every benchmark file in ../shared/data loads: a reader that refuses real data
/// (BoolQ's passages hold U+FEFF inside strings) is caught here, not in the middle of a sweep.
#[test]
fn every_item_of_every_shipped_benchmark_loads() {
    let data = keel_testkit::shared_data();
    for name in ["arc_easy", "arc_challenge", "boolq", "mmlu", "mmlu_5shot"] {
        let task = keel_eval::harness::load_mc_task(name).unwrap();
        let n = task.items(&data).unwrap_or_else(|e| panic!("{name}: {e:#}")).len();
        assert!(n > 1000, "{name}: {n} items");
    }
    for name in ["gsm8k", "gsm8k_8shot", "medcalc", "medcalc_1shot", "humaneval", "ifeval"] {
        let task = keel_eval::gen_tasks::GenTask::from_name(name).unwrap();
        let n = task.items(&data).unwrap_or_else(|e| panic!("{name}: {e:#}")).len();
        assert!(n >= 164, "{name}: {n} items");
    }
}

/// Partial scoring (Winogrande): the shared continuation after each context, against
/// transformers computing lm-evaluation-harness's recipe (tools/make_winogrande_fixture.py) on
/// hand-made items in Winogrande's published layout, scored through the shipped task file.
#[test]
fn winogrande_partial_scores_match_the_reference() {
    let fixtures = root().join("crates/keel-eval/tests/fixtures");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("winogrande/reference.json")).unwrap()).unwrap();
    let task = keel_eval::harness::load_mc_task(root().join("tasks/winogrande.toml").to_str().unwrap()).unwrap();
    let pre = Pretrained::load(&model_path()).unwrap();
    let items = task.items(&fixtures).unwrap();
    let want = reference["items"].as_array().unwrap();
    assert_eq!(items.len(), want.len());
    let ids = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    for (item, w) in items.iter().zip(want) {
        assert_eq!((item.contexts.len(), item.continuations.len()), (2, 1), "{}", item.source);
        for option in 0..item.options() {
            let (context, continuation) = item.pair(option);
            let (ctx, cont) = encode_pair(&pre.tokenizer, context, continuation).unwrap();
            assert_eq!(ctx, ids(&w["context_ids"][option]), "{}: context {option} ids", item.source);
            assert_eq!(cont, ids(&w["continuation_ids"][option]), "{}: continuation ids", item.source);
        }
    }
    let (results, acc, _) = evaluate(&pre.model, &pre.tokenizer, &task, &items, 4, &mut Progress::quiet()).unwrap();
    for (r, w) in results.iter().zip(want) {
        assert_eq!(r.pred_acc as u64, w["pred_acc"].as_u64().unwrap(), "{}", r.source);
        for (ours, theirs) in r.loglikelihoods.iter().zip(w["loglikelihoods"].as_array().unwrap()) {
            let theirs = theirs.as_f64().unwrap();
            assert!((ours - theirs).abs() < 2e-3 * theirs.abs().max(1.0), "{}: {ours} vs {theirs}", r.source);
        }
    }
    assert_eq!(acc, reference["acc"].as_f64().unwrap());
}

/// A task file in Jinja reads the same items as the `{field}` one it rewrites; task files with
/// both forms, or neither, are refused.
#[test]
fn jinja_task_files_read_the_same_items_and_forms_are_checked() {
    let data = keel_testkit::shared_data();
    let fields = keel_eval::harness::load_mc_task("mmlu_5shot").unwrap();
    let jinja = McTask::from_toml(
        &std::fs::read_to_string(root().join("tasks/mmlu_5shot.toml"))
            .unwrap()
            .replace("{question.strip}", "{{ question | trim }}")
            .replace("{choice0}", "{{ choice0 }}")
            .replace("{choice1}", "{{ choice1 }}")
            .replace("{choice2}", "{{ choice2 }}")
            .replace("{choice3}", "{{ choice3 }}")
            .replace("target_delimiter", "syntax = \"jinja\"\ntarget_delimiter"),
        "mmlu_jinja",
    )
    .unwrap();
    assert_eq!(jinja.syntax, keel_eval::template::Syntax::Jinja);
    let (a, b) = (fields.items(&data).unwrap(), jinja.items(&data).unwrap());
    assert_eq!(a.len(), b.len());
    assert!(a == b, "Jinja and {{field}} templates give different items");
    let both = "name = \"t\"\ndata = \"d.jsonl\"\ncontext = \"{q}\"\nchoices = { field = \"c\" }\n\
                contexts = { field = \"x\" }\ncontinuation = \"{y}\"\ngold = \"g\"\n";
    let neither = "name = \"t\"\ndata = \"d.jsonl\"\ngold = \"g\"\n";
    for text in [both, neither] {
        let err = format!("{:#}", McTask::from_toml(text, "t.toml").unwrap_err());
        assert!(err.contains("`contexts` and `continuation`"), "{err}");
    }
}
