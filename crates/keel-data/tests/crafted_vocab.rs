//! A crafted GGUF vocabulary (issue 12, defect 6): a SentencePiece unknown-token id far past
//! the vocabulary is an error naming the key, not a panic.

use keel_data::tokenizer::Tokenizer;
use keel_model::gguf::GgufFile;
use std::path::Path;

fn string(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// A GGUF holding only a SentencePiece vocabulary of four tokens, with `unk` as its unknown id.
fn spm_vocab(unk: u64) -> Vec<u8> {
    let tokens = ["<unk>", "<s>", "</s>", "\u{2581}a"];
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(5u64.to_le_bytes());
    string(&mut b, "tokenizer.ggml.model");
    b.extend(8u32.to_le_bytes());
    string(&mut b, "llama");
    string(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((tokens.len() as u64).to_le_bytes());
    tokens.iter().for_each(|t| string(&mut b, t));
    string(&mut b, "tokenizer.ggml.scores");
    b.extend(9u32.to_le_bytes());
    b.extend(6u32.to_le_bytes());
    b.extend((tokens.len() as u64).to_le_bytes());
    (0..tokens.len()).for_each(|i| b.extend((-(i as f32)).to_le_bytes()));
    string(&mut b, "tokenizer.ggml.token_type");
    b.extend(9u32.to_le_bytes());
    b.extend(5u32.to_le_bytes());
    b.extend((tokens.len() as u64).to_le_bytes());
    [2i32, 3, 3, 1].iter().for_each(|t| b.extend(t.to_le_bytes()));
    string(&mut b, "tokenizer.ggml.unknown_token_id");
    b.extend(10u32.to_le_bytes());
    b.extend(unk.to_le_bytes());
    b
}

#[test]
fn an_unknown_token_id_past_the_vocabulary_is_refused() {
    let g = GgufFile::from_bytes(Path::new("unk.gguf"), spm_vocab(1_000_000_000)).unwrap();
    let err = format!("{:#}", Tokenizer::from_gguf(&g).err().expect("a crafted unk id was accepted"));
    assert!(err.contains("tokenizer.ggml.unknown_token_id is 1000000000") && err.contains("4 tokens"), "{err}");
    let g = GgufFile::from_bytes(Path::new("ok.gguf"), spm_vocab(0)).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert!(!tok.encode("a", false).unwrap().is_empty(), "a well-formed vocabulary still tokenizes");
}

/// Found by fuzzing: malformed JSON inside a `decoder` made the tokenizers crate panic
/// ("Helper") instead of returning an error.
#[test]
fn a_tokenizer_json_with_malformed_json_is_an_error_not_a_panic() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crafted_vocab");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(
        &path,
        r#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "WordPiel": {"type": "WordPiece"}}, "model": {"type": "WordPiece", "vocab": {}}}"#,
    )
    .unwrap();
    let err = format!("{:#}", Tokenizer::from_file(&path).err().expect("malformed JSON was accepted"));
    assert!(err.contains("tokenizer.json") && err.contains("not valid JSON") && err.contains("column"), "{err}");
}
