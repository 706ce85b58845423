//! The second real model family: Gemma-3-270M (base), from its Q4_K_M GGUF (fetched by
//! `scripts/fetch-model.sh gemma3-270m`), against transformers' Gemma3ForCausalLM on the same
//! file (fixtures by tools/make_gemma3_real_fixtures.py).

use keel_data::chat::Message;
use keel_infer::pretrained::Pretrained;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::inference::Decoder;
use keel_model::safetensors::SafeTensors;
use keel_model::{Batch, Workspace};
use keel_testkit::gemma3_model_path;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The base model, given Gemma's turn format (the GGUF has no chat template).
fn gemma() -> &'static Pretrained {
    static MODEL: OnceLock<Pretrained> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut pre = Pretrained::load(&gemma3_model_path()).unwrap();
        assert!(pre.chat_template.is_none(), "the base GGUF ships no chat template");
        pre.set_chat_template("gemma").unwrap();
        pre
    })
}

fn fixture(name: &str) -> PathBuf {
    keel_testkit::repo_root().join("crates/keel-model/tests/fixtures/gemma3").join(name)
}

/// The fixture's prompt ids and transformers' logits at its last position.
fn reference(name: &str) -> (Vec<u32>, Vec<f32>) {
    let st = SafeTensors::open(&fixture(name)).unwrap();
    let ids = st.read_i64("input_ids").unwrap().iter().map(|&i| i as u32).collect();
    (ids, st.to_vec_f32("logits").unwrap())
}

/// keel's full (uncached) forward: the logits at the last position only.
fn full_forward_last(ids: &[u32]) -> Vec<f32> {
    let model = &gemma().model;
    let t = ids.len();
    let mut targets = vec![IGNORE; t];
    targets[t - 1] = 0; // any target: it only asks for this position's logits
    let batch = Batch {
        batch: 1,
        seq: t,
        ids: ids.to_vec(),
        positions: (0..t as u32).collect(),
        segments: vec![1; t],
        targets,
    };
    let mut ws = Workspace::new(&model.config, 1, t, false).unwrap();
    ws.logits_at_targets_only = true;
    model.forward(&mut ws, &batch).unwrap();
    ws.logits_row(t - 1, model.config.vocab_size).unwrap().to_vec()
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / b.iter().fold(0.0f64, |m, y| m.max(y.abs() as f64))
}

#[test]
fn the_config_is_gemma_3_270m() {
    let c = &gemma().model.config;
    assert_eq!((c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim), (640, 18, 4, 1, 256));
    assert_eq!((c.vocab_size, c.sliding_window, c.tie_word_embeddings), (262_144, Some(512), true));
    let global: Vec<usize> = (0..c.num_layers).filter(|&l| c.window(l).is_none()).collect();
    assert_eq!(global, [5, 11, 17]);
}

#[test]
fn next_token_logits_equal_transformers() {
    for name in ["paris.safetensors", "long.safetensors"] {
        let (ids, want) = reference(name);
        let err = rel_err(&full_forward_last(&ids), &want);
        println!("{name}: {} tokens, relative error {err:.2e}", ids.len());
        assert!(err < 1e-4, "{name}: logits differ from transformers' by {err:.2e} (relative)");
    }
}

#[test]
fn greedy_continuation_of_paris_begins_france() {
    let pre = gemma();
    let ids = pre.tokenizer.encode("Paris is the capital and largest city of", true).unwrap();
    let greedy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("greedy.json")).unwrap()).unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(greedy["input_ids"].clone()).unwrap();
    assert_eq!(ids, want_ids, "BOS + the prompt, as transformers tokenizes it");
    let opts = keel_infer::generate::GenOptions { max_new_tokens: 16, ..Default::default() };
    let out = keel_infer::generate::generate(pre, &[ids], &opts, |_, _, _| {}).unwrap();
    assert!(out[0].text.starts_with(" France"), "continuation: {:?}", out[0].text);
    let want: Vec<u32> = serde_json::from_value(greedy["generated_ids"].clone()).unwrap();
    assert_eq!(out[0].ids, want, "the greedy tokens transformers generates: {}", greedy["generated_text"]);
}

/// The long prompt (658 tokens) runs past the 512-token window: a decoder fed its first 620
/// tokens as a prompt and the rest one at a time ends on transformers' logits.
#[test]
fn cached_decoding_past_the_sliding_window_equals_the_full_forward() {
    let (ids, want) = reference("long.safetensors");
    assert!(ids.len() > 600);
    let model = &gemma().model;
    let mut dec = Decoder::new(model, 1, ids.len());
    dec.prefill(&[ids[..620].to_vec()]).unwrap();
    let mut logits = Vec::new();
    for &id in &ids[620..] {
        logits = dec.step(&[id]).unwrap().to_vec();
    }
    let err = rel_err(&logits, &want);
    assert!(err < 1e-4, "cached decoding differs from transformers' full forward by {err:.2e}");
    let err = rel_err(&logits, &full_forward_last(&ids));
    assert!(err < 1e-5, "cached decoding differs from keel's full forward by {err:.2e}");
}

/// Gemma's SentencePiece vocabulary from the GGUF: the ids and text transformers gives.
#[test]
fn the_tokenizer_encodes_and_decodes_like_transformers() {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokens.json")).unwrap()).unwrap();
    let tok = &gemma().tokenizer;
    for case in cases["samples"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want, false).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
}

/// Gemma's turn format, which keel ships for the base model: its markers are single tokens of
/// the vocabulary, and generation stops at the end of a turn.
#[test]
fn the_gemma_chat_format_uses_the_vocabularys_turn_tokens() {
    let pre = gemma();
    let template = pre.chat_template.as_ref().unwrap();
    let messages = [Message::new("user", "Name a color."), Message::new("assistant", "Blue.")];
    let text = template.render(&messages, false).unwrap();
    assert_eq!(
        text,
        "<bos><start_of_turn>user\nName a color.<end_of_turn>\n<start_of_turn>model\nBlue.<end_of_turn>\n"
    );
    let ids = pre.tokenizer.encode(&text, false).unwrap();
    assert_eq!(ids[..3], [2, 105, 2364], "<bos> <start_of_turn> user");
    assert_eq!(ids.iter().filter(|&&i| i == 106).count(), 2, "<end_of_turn> is one token");
    assert!(pre.stop_ids().contains(&106) && pre.stop_ids().contains(&1), "{:?}", pre.stop_ids());
}
