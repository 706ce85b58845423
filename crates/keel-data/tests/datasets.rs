//! Data readers on their formats' own examples, the MedCalc-Bench split, and loss masks.

use keel_data::chat::Message;
use keel_data::dataset::{gsm8k_final_answer, read_examples, Fields, Format, Target};
use keel_data::mask::tokenize_conversation;
use keel_data::medcalc::read_medcalc;
use keel_data::tokenizer::Tokenizer;
use keel_model::gguf::{GgufFile, MetaValue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("datasets");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn shared(rel: &str) -> PathBuf {
    keel_testkit::shared_data().join(rel)
}

fn roles(m: &[Message]) -> Vec<&str> {
    m.iter().map(|m| m.role.as_str()).collect()
}

#[test]
fn generic_formats_become_conversations() {
    let f = Fields::default();
    let msgs = write(
        "m.jsonl",
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}"#,
    );
    let ex = read_examples(&msgs, Format::Messages, Target::Cot, &f).unwrap();
    assert_eq!(roles(&ex[0].messages), ["system", "user", "assistant"]);

    let pc = write("pc.jsonl", "{\"prompt\": \"2+2?\", \"completion\": \"4\"}\n\n{\"prompt\": \"3+3?\", \"completion\": \"6\", \"system\": \"Math.\"}\n");
    let ex = read_examples(&pc, Format::PromptCompletion, Target::Cot, &f).unwrap();
    assert_eq!(ex.len(), 2, "blank lines are skipped");
    assert_eq!(roles(&ex[1].messages), ["system", "user", "assistant"]);
    assert!(ex[1].source.ends_with("pc.jsonl:3"));

    let alpaca = write(
        "a.jsonl",
        r#"{"instruction": "Translate to French.", "input": "cat", "output": "chat"}
{"instruction": "Say hi.", "input": "", "output": "hi"}"#,
    );
    let ex = read_examples(&alpaca, Format::Alpaca, Target::Cot, &f).unwrap();
    assert_eq!(ex[0].messages[0].content, "Translate to French.\n\ncat");
    assert_eq!(ex[1].messages[0].content, "Say hi.");

    let sg = write(
        "s.jsonl",
        r#"{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]}"#,
    );
    let ex = read_examples(&sg, Format::Sharegpt, Target::Cot, &f).unwrap();
    assert_eq!(roles(&ex[0].messages), ["user", "assistant", "user", "assistant"]);

    // Field names are configurable.
    let renamed = write("r.jsonl", r#"{"question": "Why?", "reply": "Because."}"#);
    let f2 = Fields { prompt: "question".into(), completion: "reply".into(), ..Fields::default() };
    assert_eq!(
        read_examples(&renamed, Format::PromptCompletion, Target::Cot, &f2).unwrap()[0].messages[1].content,
        "Because."
    );
}

#[test]
fn malformed_lines_name_the_file_and_line() {
    let f = Fields::default();
    let err = |name: &str, text: &str, format: Format| {
        format!("{:#}", read_examples(&write(name, text), format, Target::Cot, &f).unwrap_err())
    };
    let e = err(
        "bad.jsonl",
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": 1, \"completion\": \"b\"}\n",
        Format::PromptCompletion,
    );
    assert!(e.contains("bad.jsonl:2") && e.contains("\"prompt\" must be a string"), "{e}");
    let e = err("trunc.jsonl", "{\"prompt\": \"a\", \"compl", Format::PromptCompletion);
    assert!(e.contains("trunc.jsonl:1") && e.contains("not valid JSON"), "{e}");
    let e = err("who.jsonl", r#"{"conversations": [{"from": "robot", "value": "x"}]}"#, Format::Sharegpt);
    assert!(e.contains("who.jsonl:1") && e.contains("robot"), "{e}");
    let e = format!(
        "{:#}",
        read_examples(&PathBuf::from("/nonexistent/x.jsonl"), Format::Gsm8k, Target::Cot, &f).unwrap_err()
    );
    assert!(e.contains("/nonexistent/x.jsonl") && e.contains("keel data fetch"), "{e}");
}

#[test]
fn invalid_utf8_a_bom_and_an_empty_file_name_the_file() {
    let f = Fields::default();
    let ok = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
    let read = |name: &str, bytes: &[u8]| {
        let p = write(name, "");
        std::fs::write(&p, bytes).unwrap();
        read_examples(&p, Format::PromptCompletion, Target::Cot, &f).map_err(|e| format!("{e:#}"))
    };
    let e = read("latin1.jsonl", &[ok.as_bytes(), b"{\"prompt\": \"caf\xe9\", \"completion\": \"b\"}\n"].concat());
    assert!(e.as_ref().unwrap_err().contains("latin1.jsonl:2") && e.unwrap_err().contains("UTF-8"));
    let e = read("bom.jsonl", format!("{ok}\u{feff}{ok}").as_bytes()).unwrap_err();
    assert!(e.contains("bom.jsonl:2") && e.contains("byte-order mark"), "{e}");
    assert_eq!(read("lead_bom.jsonl", format!("\u{feff}{ok}").as_bytes()).unwrap().len(), 1);
    let e = read("empty.jsonl", b"\n  \n").unwrap_err();
    assert!(e.contains("empty.jsonl") && e.contains("no examples"), "{e}");
}

#[test]
fn medcalc_rows_with_an_empty_answer_note_or_explanation_are_refused_by_row() {
    let header = "Row Number,Calculator Name,Calculator ID,Category,Output Type,Note ID,Note Type,Patient Note,Question,Relevant Entities,Ground Truth Answer,Lower Limit,Upper Limit,Ground Truth Explanation\n";
    let good = "1,BMI,6,physical,decimal,n1,Extracted,A note.,What is the BMI?,{},22.5,21,24,BMI is 22.5.\n";
    for (column, row) in [
        ("Ground Truth Answer", "2,BMI,6,physical,decimal,n2,Extracted,A note.,What is the BMI?,{},,21,24,Because.\n"),
        ("Patient Note", "2,BMI,6,physical,decimal,n2,Extracted,,What is the BMI?,{},22.5,21,24,Because.\n"),
        (
            "Ground Truth Explanation",
            "2,BMI,6,physical,decimal,n2,Extracted,A note.,What is the BMI?,{},22.5,21,24, \n",
        ),
    ] {
        let p = write("medcalc_empty.csv", &format!("{header}{good}{row}"));
        let e = format!("{:#}", read_medcalc(&p).unwrap_err());
        assert!(e.contains("medcalc_empty.csv:row 3") && e.contains(column), "{column}: {e}");
    }
    assert_eq!(read_medcalc(&write("medcalc_good.csv", &format!("{header}{good}"))).unwrap().len(), 1);
}

#[test]
fn gsm8k_targets_are_the_worked_answer_or_the_final_number() {
    let f = Fields::default();
    let path = shared("gsm8k/train.jsonl");
    let cot = read_examples(&path, Format::Gsm8k, Target::Cot, &f).unwrap();
    let label = read_examples(&path, Format::Gsm8k, Target::Label, &f).unwrap();
    assert_eq!(cot.len(), 7473);
    // The first example: "... Natalia sold 48+24 = <<48+24=72>>72 clips ... #### 72".
    assert!(!cot[0].messages[1].content.contains("<<"), "calculator annotations are removed");
    assert!(cot[0].messages[1].content.ends_with("#### 72"));
    assert_eq!(label[0].messages[1].content, "72");
    assert_eq!(gsm8k_final_answer("so $1,000 in total.\n#### 1,000"), Some("1000".into()));
    assert_eq!(gsm8k_final_answer("no marker"), None);
}

#[test]
fn medcalc_split_is_deterministic_stratified_and_disjoint_by_note() {
    let path = shared("medcalc_bench/test_data.csv");
    let rows = read_medcalc(&path).unwrap();
    assert_eq!(rows.len(), 1047);
    let again = read_medcalc(&path).unwrap();
    assert!(rows.iter().zip(&again).all(|(a, b)| a.held_out == b.held_out), "deterministic");
    let held: BTreeSet<&str> = rows.iter().filter(|r| r.held_out).map(|r| r.note_id.as_str()).collect();
    assert!(rows.iter().filter(|r| !r.held_out).all(|r| !held.contains(r.note_id.as_str())), "no note on both sides");
    let mut per_calc: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in &rows {
        let e = per_calc.entry(&r.calculator_id).or_default();
        e.0 += 1;
        e.1 += r.held_out as usize;
    }
    assert_eq!(per_calc.len(), 55);
    for (calc, (n, h)) in per_calc {
        assert!(h >= 1 && h < n, "calculator {calc}: {h} of {n} held out");
    }
    let frac = rows.iter().filter(|r| r.held_out).count() as f64 / rows.len() as f64;
    assert!((0.18..0.30).contains(&frac), "held-out fraction {frac}");
    let train = read_examples(&path, Format::Medcalc, Target::Cot, &Fields::default()).unwrap();
    assert_eq!(train.len(), rows.iter().filter(|r| !r.held_out).count(), "training reads only the training part");
    let first = rows.iter().find(|r| !r.held_out).unwrap();
    assert!(train[0].messages[1].content.ends_with(&format!("Answer: {}", first.answer)));
    let label = read_examples(&path, Format::Medcalc, Target::Label, &Fields::default()).unwrap();
    assert_eq!(label[0].messages[1].content, format!("Answer: {}", first.answer));
}

#[test]
fn esci_reader_on_the_documented_format() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esci_sample.jsonl");
    let label = read_examples(&path, Format::Esci, Target::Label, &Fields::default()).unwrap();
    let answers: Vec<&str> = label.iter().map(|e| e.messages[1].content.as_str()).collect();
    assert_eq!(
        answers,
        ["Answer: Exact", "Answer: Substitute", "Answer: Complement", "Answer: Irrelevant", "Answer: Exact"]
    );
    assert!(
        label[0].messages[0].content.contains("wireless earbuds for running")
            && label[0].messages[0].content.contains("ear hooks")
    );
    // Chain-of-thought targets need the rationale, which the last line lacks.
    let err = format!("{:#}", read_examples(&path, Format::Esci, Target::Cot, &Fields::default()).unwrap_err());
    assert!(err.contains("esci_sample.jsonl:5") && err.contains("rationale"), "{err}");
    let bad = write("esci_bad.jsonl", r#"{"query": "q", "product_title": "p", "label": "X"}"#);
    assert!(format!("{:#}", read_examples(&bad, Format::Esci, Target::Label, &Fields::default()).unwrap_err())
        .contains("unknown ESCI label"));
}

#[test]
fn loss_masks_cover_every_assistant_turn_and_nothing_else() {
    let g = GgufFile::open(&keel_testkit::default_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let source = g.meta("tokenizer.chat_template").and_then(MetaValue::as_str).unwrap();
    let template = keel_data::chat::ChatTemplate::new(source, &[]).unwrap();
    let conv = [
        Message::new("user", "Name a fruit."),
        Message::new("assistant", "Apple."),
        Message::new("user", "Another?"),
        Message::new("assistant", "Pear."),
    ];
    let ex = tokenize_conversation(&tok, &template, &conv).unwrap().unwrap();
    let supervised: String = ex
        .ids
        .iter()
        .zip(&ex.supervised)
        .filter(|(_, &s)| s)
        .map(|(&id, _)| tok.decode(&[id], false).unwrap())
        .collect();
    assert_eq!(supervised, "Apple.<|im_end|>\nPear.<|im_end|>\n");
    assert!(tokenize_conversation(&tok, &template, &conv[..1]).unwrap().is_none(), "no assistant turn: skipped");
}
