//! Entry points of the fuzz targets in `fuzz/` (tokenizers, chat templates, data readers), also
//! called by the corpus replay tests; see `keel_model::fuzzing`.

use crate::chat::{ChatTemplate, Message};
use crate::dataset::{read_examples, Fields, Format, Target};
use crate::tokenizer::Tokenizer;
use keel_model::fuzzing::with_temp_file;
use keel_model::gguf::GgufFile;
use std::path::Path;

const SAMPLE: &str = "Hello, world! 12345 naïve ▁<s> \u{1F600}\n\tend";

fn exercise(tok: &Tokenizer) {
    if let Ok(ids) = tok.encode(SAMPLE, true) {
        let _ = tok.decode(&ids, false);
    }
    let _ = tok.encode_with_offsets(SAMPLE);
}

/// A `tokenizer.json`, then encoding and decoding a sample.
pub fn tokenizer_json(data: &[u8]) {
    if let Ok(tok) = with_temp_file("tokenizer.json", data, Tokenizer::from_file) {
        exercise(&tok);
    }
}

/// The tokenizer a GGUF file's `tokenizer.ggml.*` metadata describes.
pub fn gguf_vocab(data: &[u8]) {
    let Ok(g) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) else { return };
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        exercise(&tok);
    }
}

/// A chat template, rendered over a short conversation.
pub fn chat_template(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(t) = ChatTemplate::new(source, &[("bos_token", "<s>"), ("eos_token", "</s>")]) else { return };
    let messages =
        [Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello")];
    let _ = t.render(&messages, true);
}

/// A training data file: the first byte picks the format and target, the rest is the file.
pub fn dataset(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let formats = [
        Format::Messages,
        Format::PromptCompletion,
        Format::Alpaca,
        Format::Sharegpt,
        Format::Gsm8k,
        Format::Medcalc,
        Format::Esci,
    ];
    let format = formats[selector as usize % formats.len()];
    let target = if selector & 0x80 == 0 { Target::Cot } else { Target::Label };
    let name = if format == Format::Medcalc { "data.csv" } else { "data.jsonl" };
    let _ = with_temp_file(name, body, |p| read_examples(p, format, target, &Fields::default()));
}
