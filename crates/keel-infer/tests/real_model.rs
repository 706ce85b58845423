//! The default model, SmolLM2-135M-Instruct, from its GGUF file (fetched by
//! scripts/fetch-model.sh, which .ci/run calls first).

use keel_data::chat::Message;
use keel_infer::generate::{generate, Finish, GenOptions};
use keel_infer::pretrained::Pretrained;
use keel_model::inference::Decoder;
use keel_model::safetensors::SafeTensors;
use keel_testkit::default_model_path;
use std::path::PathBuf;
use std::sync::OnceLock;

fn smollm2() -> &'static Pretrained {
    static MODEL: OnceLock<Pretrained> = OnceLock::new();
    MODEL.get_or_init(|| Pretrained::load(&default_model_path()).unwrap())
}

#[test]
fn greedy_chat_answer_names_paris() {
    let pre = smollm2();
    let prompt = pre
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[Message::new("user", "What is the capital of France?")], true)
        .unwrap();
    let ids = pre.tokenizer.encode(&prompt, true).unwrap();
    let out = generate(pre, &[ids], &GenOptions { max_new_tokens: 30, ..GenOptions::default() }, |_, _, _| {}).unwrap();
    assert!(out[0].text.contains("Paris"), "answer: {:?}", out[0].text);
    assert_eq!(out[0].finish, Finish::Eos);
}

#[test]
fn batched_generation_equals_one_at_a_time() {
    let pre = smollm2();
    let template = pre.chat_template.as_ref().unwrap();
    let prompts: Vec<Vec<u32>> = ["Name a color.", "What is 2 + 2? Answer briefly."]
        .iter()
        .map(|q| pre.tokenizer.encode(&template.render(&[Message::new("user", q)], true).unwrap(), true).unwrap())
        .collect();
    let opts = GenOptions { max_new_tokens: 12, ..GenOptions::default() };
    let together = generate(pre, &prompts, &opts, |_, _, _| {}).unwrap();
    for (p, g) in prompts.iter().zip(&together) {
        let alone = generate(pre, std::slice::from_ref(p), &opts, |_, _, _| {}).unwrap();
        assert_eq!(alone[0].ids, g.ids, "left padding must not change a greedy answer");
    }
}

#[test]
fn stop_strings_cut_the_text() {
    let pre = smollm2();
    let prompt = pre
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[Message::new("user", "What is the capital of France?")], true)
        .unwrap();
    let ids = pre.tokenizer.encode(&prompt, true).unwrap();
    let opts = GenOptions { max_new_tokens: 30, stop: vec![" is".into()], ..GenOptions::default() };
    let out = generate(pre, &[ids], &opts, |_, _, _| {}).unwrap();
    assert_eq!(out[0].text, "The capital of France");
    assert_eq!(out[0].finish, Finish::Stop);
}

#[test]
fn gguf_model_logits_equal_transformers() {
    let pre = Pretrained::load(&default_model_path()).unwrap();
    let reference = SafeTensors::open(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keel-model/tests/fixtures/smollm2/france.safetensors"),
    )
    .unwrap();
    let input: Vec<u32> = reference.read_i64("input_ids").unwrap().iter().map(|&x| x as u32).collect();
    let greedy = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keel-model/tests/fixtures/smollm2/greedy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // The chat template and tokenizer give transformers' ids for the prompt.
    let prompt = pre
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[Message::new("user", "What is the capital of France?")], true)
        .unwrap();
    assert_eq!(prompt, greedy["prompt"].as_str().unwrap());
    assert_eq!(pre.tokenizer.encode(&prompt, true).unwrap(), input);
    let mut dec = Decoder::new(&pre.model, 1, input.len());
    let ours = dec.prefill(&[input]).unwrap().to_vec();
    let want = reference.to_vec_f32("logits").unwrap();
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = ours.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "next-token logits differ by {diff} (largest logit {scale})");
}

/// Texts whose tokens split characters: CJK, emoji, accents, code.
const SPLIT_CHARACTERS: [&str; 5] = [
    "巴黎是法国的首都，也是最大的城市。",
    "東京は日本の首都です。",
    "Happiness: 😀😂🥳 and ❤️‍🔥",
    "Crème brûlée à la façon de Zoë, naïve café",
    "fn main() { println!(\"{}\", \"λ → ∀x\"); }",
];

#[test]
fn streamed_text_only_grows_by_whole_characters_and_equals_the_decoded_text() {
    let pre = smollm2();
    for text in SPLIT_CHARACTERS {
        let ids = pre.tokenizer.encode(text, false).unwrap();
        let mut stream = keel_infer::detokenize::TextStream::default();
        let mut pieces = Vec::new();
        for n in 1..=ids.len() {
            pieces.push(stream.push(&pre.tokenizer, &ids[..n]).unwrap().to_string());
        }
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{text}: {pieces:?}");
        assert_eq!(pieces.concat(), text);
        assert_eq!(pre.tokenizer.decode(&ids, true).unwrap(), text);
    }
}

#[test]
fn generation_beyond_ascii_streams_and_ends_with_the_decoded_answer() {
    let pre = smollm2();
    let template = pre.chat_template.as_ref().unwrap();
    for prompt in ["请用中文介绍一下巴黎。", "Write three emoji that describe happiness, only emoji."] {
        let rendered = template.render(&[Message::new("user", prompt)], true).unwrap();
        let ids = pre.tokenizer.encode(&rendered, true).unwrap();
        let mut seen = String::new();
        let opts = GenOptions { max_new_tokens: 40, ..GenOptions::default() };
        let out = generate(pre, &[ids], &opts, |_, g, finished| {
            assert!(g.text.starts_with(&seen), "streamed text changed: {seen:?} → {:?}", g.text);
            if !finished {
                seen.clone_from(&g.text);
            }
        })
        .unwrap();
        // The final text is the whole answer decoded: it may end in an incomplete character
        // where the token budget cut one, but nothing streamed before held one.
        assert_eq!(out[0].text, pre.tokenizer.decode(&out[0].ids, true).unwrap());
        assert!(!seen.is_empty() && !seen.contains('\u{FFFD}'), "{prompt}: streamed {seen:?}");
        assert!(out[0].text.starts_with(&seen));
    }
}

/// transformers' greedy answers to chat questions in Chinese, Japanese, emoji, accented French
/// and code, and their decoded text (tools/make_decode_fixtures.py): keel generates the same
/// tokens from the same prompt, decodes them to the same text, and streams a prefix of it that
/// never holds a broken character.
#[test]
fn greedy_answers_beyond_ascii_decode_and_stream_as_transformers_decodes_them() {
    let pre = smollm2();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode_reference.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let template = pre.chat_template.as_ref().unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let question = case["question"].as_str().unwrap();
        let prompt = ids(&case["input_ids"]);
        let rendered = template.render(&[Message::new("user", question)], true).unwrap();
        assert_eq!(pre.tokenizer.encode(&rendered, true).unwrap(), prompt, "{question}: prompt tokens");
        let opts = GenOptions {
            max_new_tokens: fixture["max_new_tokens"].as_u64().unwrap() as usize,
            ..GenOptions::default()
        };
        let mut streamed = String::new();
        let out = generate(pre, &[prompt], &opts, |_, g, finished| {
            if !finished {
                streamed.clone_from(&g.text);
            }
        })
        .unwrap();
        let want = case["text"].as_str().unwrap();
        assert_eq!(out[0].ids, ids(&case["generated_ids"]), "{question}: greedy tokens");
        assert_eq!(out[0].text, want, "{question}: decoded text");
        assert!(want.starts_with(&streamed) && !streamed.contains('\u{FFFD}'), "{question}: streamed {streamed:?}");
        assert!(!streamed.is_empty(), "{question}: nothing streamed");
    }
}
