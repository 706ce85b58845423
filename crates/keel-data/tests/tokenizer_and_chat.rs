//! The tokenizer built from the GGUF vocabulary and the chat templates against reference
//! outputs (fixtures from tools/make_tokenizer_fixtures.py and tools/make_real_model_fixtures.py).

use keel_data::chat::{ChatTemplate, Message};
use keel_data::tokenizer::Tokenizer;
use keel_model::gguf::GgufFile;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn gguf_tokenizer_ids_equal_the_reference_and_decode_round_trips() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(&keel_testkit::default_model_path()).unwrap()).unwrap();
    assert_eq!(tok.eos.as_ref().map(|e| e.0), Some(2));
    assert!(!tok.add_bos);
    let cases = json(fixture("tokenizer_cases.json"));
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids(&case["ids"]), "ids of {text:?}");
        assert_eq!(tok.encode(text, false).unwrap(), ids(&case["ids_no_special"]), "ids of {text:?} without specials");
        assert_eq!(
            tok.decode(&ids(&case["ids"]), false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decode of {text:?}"
        );
    }
    assert!(cases.as_array().unwrap().len() >= 30);
}

/// A SentencePiece vocabulary in GGUF (`tokenizer.ggml.model = llama`, scores instead of merges;
/// fixtures from tools/make_spm_fixtures.py) tokenizes as SentencePiece itself does.
#[test]
fn sentencepiece_gguf_tokenizer_ids_equal_sentencepiece() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(&fixture("spm_tokenizer.gguf")).unwrap()).unwrap();
    assert_eq!((tok.bos.as_ref().map(|b| b.0), tok.eos.as_ref().map(|e| e.0), tok.add_bos), (Some(1), Some(2), true));
    let cases = json(fixture("spm_cases.json"));
    let mut differs_from_transformers = 0;
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, false).unwrap(), want, "ids of {text:?}");
        assert_eq!(tok.encode(text, true).unwrap(), [&[1], &want[..]].concat(), "BOS first for {text:?}");
        assert_eq!(tok.decode(&want, false).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
        differs_from_transformers += usize::from(ids(&case["ids_transformers_gguf"]) != want);
    }
    // transformers' GGUF conversion skips the space prefix when the text starts with a space;
    // SentencePiece and llama.cpp do not, and keel follows them (three of the cases).
    assert_eq!(differs_from_transformers, 3);
    // Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes.
    let rocket = tok.encode("🚀", false).unwrap();
    assert_eq!(rocket.len(), 5, "▁ and four bytes: {rocket:?}");
    assert_eq!(tok.decode(&rocket, false).unwrap(), "🚀");
    // Special tokens in the text become their ids, as in every keel tokenizer.
    assert_eq!(tok.encode("<s>Hi</s>", false).unwrap()[0], 1);
}

#[test]
fn chat_templates_render_like_transformers() {
    let templates = [
        ("smollm2", std::fs::read_to_string(fixture("smollm2_chat_template.jinja")).unwrap()),
        ("qwen2_5", std::fs::read_to_string(fixture("qwen2_5_chat_template.jinja")).unwrap()),
    ];
    let special = [("bos_token", "<|im_start|>"), ("eos_token", "<|im_end|>")];
    let mut seen = std::collections::BTreeSet::new();
    let cases = json(fixture("chat_cases.json"));
    for case in cases.as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let source = &templates.iter().find(|(n, _)| *n == name).unwrap().1;
        let template = ChatTemplate::new(source, &special).unwrap();
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            template.render(&messages, gen).unwrap(),
            case["rendered"].as_str().unwrap(),
            "{name}, {} messages, generation prompt {gen}",
            messages.len()
        );
        seen.insert((name, messages.len(), gen));
    }
    assert!(seen.len() >= 12, "both templates, several conversations, with and without the generation prompt");
}

/// `gguf_metadata` is `from_gguf`'s inverse: both vocabularies (byte-level BPE and SentencePiece
/// with scores rebuilt from merge ranks) written to a GGUF file read back tokenizing every case
/// exactly as SentencePiece and transformers do.
#[test]
fn vocabularies_written_to_gguf_read_back_tokenizing_the_same() {
    use keel_model::gguf_write::GgufWriter;
    let dir = std::env::temp_dir().join(format!("keel-vocab-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (model, cases) in [
        (keel_testkit::default_model_path(), fixture("tokenizer_cases.json")),
        (fixture("spm_tokenizer.gguf"), fixture("spm_cases.json")),
    ] {
        let tok = Tokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
        let mut w = GgufWriter::default();
        for (k, v) in tok.gguf_metadata().unwrap() {
            w.set(&k, v);
        }
        let path = dir.join("vocab.gguf");
        w.write(&path).unwrap();
        let back = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        assert_eq!((&back.bos, &back.eos, back.add_bos), (&tok.bos, &tok.eos, tok.add_bos), "{}", model.display());
        for case in json(cases).as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(back.encode(text, false).unwrap(), tok.encode(text, false).unwrap(), "{text:?}");
            assert_eq!(back.encode(text, true).unwrap(), tok.encode(text, true).unwrap(), "{text:?}");
            let ids = tok.encode(text, false).unwrap();
            assert_eq!(back.decode(&ids, false).unwrap(), tok.decode(&ids, false).unwrap());
        }
    }
}

/// The formats keel ships for models without a template: Gemma's turns (system text folded into
/// the first user turn, the assistant called "model") and ChatML.
#[test]
fn named_templates_render_their_turn_formats() {
    use keel_data::chat::named_template;
    let gemma = named_template("gemma").unwrap();
    let t = ChatTemplate::new(gemma.source, &[("bos_token", "<bos>")]).unwrap();
    let chat = [Message::new("system", "Be brief."), Message::new("user", " Hi "), Message::new("assistant", "Hello.")];
    assert_eq!(
        t.render(&chat, false).unwrap(),
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
    );
    assert_eq!(
        t.render(&chat[1..2], true).unwrap(),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(t.end_of_turn, Some("<end_of_turn>"));
    let err = t.render(&[Message::new("tool", "42")], false).unwrap_err();
    assert!(format!("{err:#}").contains("not tool"), "{err:#}");

    let chatml = ChatTemplate::new(named_template("chatml").unwrap().source, &[]).unwrap();
    assert_eq!(
        chatml.render(&chat[..2], true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(chatml.end_of_turn, Some("<|im_end|>"));
    assert!(named_template("llama9").is_none());
}
