//! Generation tasks' items from the shared data.

use keel_eval::gen_tasks::GenTask;
use std::path::PathBuf;

fn data() -> PathBuf {
    keel_testkit::shared_data()
}

#[test]
fn medcalc_items_are_the_held_out_rows_and_one_shot_adds_the_calculators_example() {
    let zero = GenTask::Medcalc.items(&data()).unwrap();
    let one = GenTask::MedcalcOneShot.items(&data()).unwrap();
    assert_eq!(zero.len(), one.len());
    assert!(zero.len() > 150 && zero.len() < 320, "about a fifth of 1047 rows: {}", zero.len());
    assert!(zero.iter().all(|i| i.shots.is_empty()));
    for item in &one {
        assert_eq!(item.shots.len(), 2);
        assert_eq!((item.shots[0].role.as_str(), item.shots[1].role.as_str()), ("user", "assistant"));
        assert!(item.shots[1].content.contains("\nAnswer: "), "{}", item.source);
        assert_ne!(item.shots[0].content, item.prompt, "the example is another patient");
    }
}

#[test]
fn gsm8k_items_are_the_test_split() {
    let items = GenTask::Gsm8k.items(&data()).unwrap();
    assert_eq!(items.len(), 1319);
    assert!(items[0].reference.as_str().unwrap().contains("#### "));
    let err = format!("{:#}", GenTask::Gsm8k.items(&PathBuf::from("/nowhere")).unwrap_err());
    assert!(err.contains("/nowhere/gsm8k/test.jsonl"), "{err}");
}

#[test]
fn every_canonical_humaneval_solution_passes_and_a_wrong_one_fails() {
    use keel_eval::humaneval::{passes, program, read_tasks};
    if let Err(e) = keel_eval::sandbox::probe("bwrap") {
        eprintln!("skipped: no sandbox here, so HumanEval is refused: {e:#}");
        return;
    }
    let tasks = read_tasks(&data()).unwrap();
    assert_eq!(tasks.len(), 164);
    let raw = std::io::Read::bytes(flate2::read::GzDecoder::new(
        std::fs::File::open(data().join("humaneval/HumanEval.jsonl.gz")).unwrap(),
    ))
    .collect::<Result<Vec<u8>, _>>()
    .unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(raw).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let limit = std::time::Duration::from_secs(20);
    for (t, v) in tasks.iter().zip(&lines) {
        let solution = v["canonical_solution"].as_str().unwrap();
        assert!(passes(&program(t, solution), limit).unwrap(), "{}: the canonical solution must pass", t.task_id);
    }
    assert!(!passes(&program(&tasks[0], "    return not True\n"), limit).unwrap());
}

#[test]
fn gsm8k_eight_shot_prompts_carry_eight_worked_examples() {
    let items = GenTask::Gsm8kEightShot.items(&data()).unwrap();
    assert_eq!(items.len(), 1319);
    let p = &items[0].prompt;
    assert_eq!(p.matches("Question: ").count(), 9);
    assert_eq!(p.matches("#### ").count(), 8);
    assert!(p.ends_with("\nAnswer:"));
}

#[test]
fn gsm8k_greedy_answers_and_scores_match_transformers() {
    use keel_infer::pretrained::Pretrained;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("crates/keel-eval/tests/fixtures/gsm8k_reference.json")).unwrap(),
    )
    .unwrap();
    let want = reference["items"].as_array().unwrap();
    let pre = Pretrained::load(&keel_testkit::default_model_path()).unwrap();
    let items: Vec<_> = GenTask::Gsm8k.items(&data()).unwrap().into_iter().take(want.len()).collect();
    let outputs = keel_eval::gen_tasks::run(
        &pre,
        GenTask::Gsm8k,
        &items,
        4,
        reference["max_new_tokens"].as_u64().unwrap() as usize,
    )
    .unwrap()
    .into_iter()
    .map(|g| g.text)
    .collect::<Vec<_>>();
    let identical = outputs.iter().zip(want).filter(|(o, w)| o.as_str() == w["output"].as_str().unwrap()).count();
    assert!(identical + 1 >= want.len(), "only {identical} of {} greedy answers equal transformers'", want.len());
    for metric in ["strict_match", "flexible_match"] {
        let ours = items
            .iter()
            .zip(&outputs)
            .filter(|(i, o)| GenTask::Gsm8k.score(i, o).unwrap().iter().any(|v| v.metric == metric && v.passed == 1))
            .count();
        let theirs = (reference[metric].as_f64().unwrap() * want.len() as f64).round() as usize;
        assert!(ours.abs_diff(theirs) <= 1, "{metric}: {ours} vs transformers' {theirs} of {}", want.len());
    }
}
