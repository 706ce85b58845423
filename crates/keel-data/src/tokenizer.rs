//! Tokenizers: a Hugging Face `tokenizer.json` through the `tokenizers` crate, or one built from
//! the vocabulary and merges embedded in a GGUF file.

use anyhow::{bail, ensure, Context, Result};
use keel_model::gguf::{GgufFile, MetaValue};
use serde_json::{json, Value};
use std::path::Path;

/// A model's tokenizer, with its BOS/EOS tokens and whether encoding prepends BOS.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The tokenizer as Hugging Face JSON (what `keel convert` writes as tokenizer.json).
    json: String,
    /// Beginning-of-sequence token (id, text), if the model has one.
    pub bos: Option<(u32, String)>,
    /// End-of-sequence token (id, text): generation stops on it.
    pub eos: Option<(u32, String)>,
    /// Whether encoding with special tokens prepends BOS.
    pub add_bos: bool,
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// A token's byte range in the text.
pub type Span = (usize, usize);

impl Tokenizer {
    /// Reads `tokenizer.json` (a file, or the directory holding it); BOS/EOS come from the
    /// `tokenizer_config.json` beside it when present.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let json = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut tok = Self::from_json(json).with_context(|| format!("{} is not a valid tokenizer", file.display()))?;
        let config_path = file.with_file_name("tokenizer_config.json");
        if let Ok(text) = std::fs::read_to_string(&config_path) {
            let cfg: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", config_path.display()))?;
            let token = |key: &str| -> Option<(u32, String)> {
                let s = match cfg.get(key)? {
                    Value::String(s) => s.clone(),
                    v => v.get("content")?.as_str()?.to_string(),
                };
                Some((tok.inner.token_to_id(&s)?, s))
            };
            tok.bos = token("bos_token");
            tok.eos = token("eos_token");
            tok.add_bos = cfg.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        }
        Ok(tok)
    }

    fn from_json(json: String) -> Result<Self> {
        // The tokenizers crate panics instead of erring on some malformed JSON (found by fuzzing):
        // check the syntax first, and turn any panic left into an error.
        serde_json::from_str::<serde::de::IgnoredAny>(&json).context("not valid JSON")?;
        let inner = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(json.as_bytes()))
            .map_err(|_| anyhow::anyhow!("the tokenizers library failed on it (a panic)"))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Tokenizer { inner, json, bos: None, eos: None, add_bos: false })
    }

    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`): byte-level BPE
    /// (`model = gpt2`) with the pre-tokenizer its `pre` names, or a SentencePiece vocabulary with
    /// scores (`model = llama`: Llama 1/2, Mistral, TinyLlama).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let meta = |k: &str| g.meta(k);
        let model = meta("tokenizer.ggml.model")
            .and_then(MetaValue::as_str)
            .context("no tokenizer.ggml.model in the GGUF file")?;
        ensure!(
            model == "gpt2" || model == "llama",
            "GGUF tokenizer model \"{model}\" is not supported (gpt2 byte-level BPE and llama SentencePiece are)"
        );
        let strings = |k: &str| -> Result<Vec<String>> {
            meta(k)
                .and_then(MetaValue::as_array)
                .with_context(|| format!("no {k} in the GGUF file"))?
                .iter()
                .map(|v| v.as_str().map(String::from).with_context(|| format!("{k} holds a non-string")))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match meta("tokenizer.ggml.token_type").and_then(MetaValue::as_array) {
            Some(a) => a
                .iter()
                .map(|v| match v {
                    MetaValue::I64(x) => *x,
                    MetaValue::U64(x) => *x as i64,
                    _ => 1,
                })
                .collect(),
            None => vec![1; tokens.len()],
        };
        ensure!(
            types.len() == tokens.len(),
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        );
        let pre = meta("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
        let vocab: serde_json::Map<String, Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let added: Vec<Value> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &t))| {
                t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED || (model == "llama" && t == TOKEN_UNKNOWN)
            })
            .map(|(id, (content, &t))| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": t != TOKEN_USER_DEFINED})
            })
            .collect();
        let id_of = |k: &str| meta(k).and_then(MetaValue::as_u64).and_then(|id| u32::try_from(id).ok());
        let named = |id: Option<u32>| id.and_then(|id| tokens.get(id as usize).map(|t| (id, t.clone())));
        let bos = named(id_of("tokenizer.ggml.bos_token_id"));
        let eos = named(id_of("tokenizer.ggml.eos_token_id"));
        // llama.cpp adds BOS for SentencePiece vocabularies unless told otherwise.
        let add_bos = match meta("tokenizer.ggml.add_bos_token") {
            Some(MetaValue::Bool(b)) => *b,
            _ => model == "llama",
        };
        let post_processor = match &bos {
            Some((id, t)) if add_bos => json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": t, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {t: {"id": t, "ids": [id], "tokens": [t]}}}),
            _ if model == "llama" => Value::Null,
            _ => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true}),
        };
        let json = if model == "llama" {
            let (scores, unk) = sentencepiece_scores(g, &tokens, &types)?;
            let add_space_prefix = !matches!(meta("tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(false)));
            sentencepiece_json(&tokens, vocab, &scores, &types, unk, add_space_prefix, added, post_processor)
        } else {
            let merges = strings("tokenizer.ggml.merges")?;
            byte_level_json(pre, vocab, merges, added, post_processor)?
        };
        let mut tok = Self::from_json(serde_json::to_string(&json)?)
            .context("the GGUF vocabulary does not form a valid tokenizer")?;
        tok.bos = bos;
        tok.eos = eos;
        tok.add_bos = add_bos;
        Ok(tok)
    }

    /// Token ids of `text`; special-token strings in the text become their ids. With
    /// `add_special_tokens`, BOS is prepended where the model asks for it.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encoding with character offsets of each token (for loss masks).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<Span>)> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// The text of `ids`; `skip_special_tokens` leaves out BOS, EOS and the like.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| anyhow::anyhow!("cannot decode: {e}"))
    }

    /// The id of a token given by its exact text (e.g. a special token), if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text.
    pub fn to_json(&self) -> &str {
        &self.json
    }
}

/// A GGUF SentencePiece vocabulary's scores (one per token) and unknown-token id.
fn sentencepiece_scores(g: &GgufFile, tokens: &[String], types: &[i64]) -> Result<(Vec<f64>, Option<u32>)> {
    let meta = |k: &str| g.meta(k);
    let scores: Vec<f64> = match meta("tokenizer.ggml.scores").and_then(MetaValue::as_array) {
        Some(a) => {
            a.iter().map(|v| v.as_f64().context("tokenizer.ggml.scores holds a non-number")).collect::<Result<_>>()?
        }
        None => bail!("no tokenizer.ggml.scores in the GGUF file (a SentencePiece vocabulary needs them)"),
    };
    ensure!(
        scores.len() == tokens.len(),
        "tokenizer.ggml.scores has {} entries for {} tokens",
        scores.len(),
        tokens.len()
    );
    let unk = match meta("tokenizer.ggml.unknown_token_id").and_then(MetaValue::as_u64) {
        // An id past the vocabulary would index out of it when the JSON is built.
        Some(id) if id >= tokens.len() as u64 => {
            bail!("tokenizer.ggml.unknown_token_id is {id}, but the vocabulary has only {} tokens", tokens.len())
        }
        Some(id) => Some(id as u32),
        None => types.iter().position(|&t| t == TOKEN_UNKNOWN).map(|i| i as u32),
    };
    Ok((scores, unk))
}

/// The byte-level pre-tokenizers keel knows, by their llama.cpp names (`tokenizer.ggml.pre`).
pub(crate) const PRE_TOKENIZERS: [&str; 4] = ["smollm", "gpt-2", "llama-bpe", "qwen2"];

/// Hugging Face JSON of the pre-tokenizer llama.cpp names `pre`.
pub(crate) fn pre_tokenizer_json(pre: &str) -> Result<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
    };
    Ok(match pre {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "default" | "gpt2" | "gpt-2" => byte_level,
        "llama-bpe" | "llama3" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "qwen2" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        other => bail!("GGUF pre-tokenizer \"{other}\" is not supported ({})", PRE_TOKENIZERS.join(", ")),
    })
}

/// Hugging Face JSON for byte-level BPE with the pre-tokenizer llama.cpp names `pre`.
fn byte_level_json(
    pre: &str,
    vocab: serde_json::Map<String, Value>,
    merges: Vec<String>,
    added: Vec<Value>,
    post_processor: Value,
) -> Result<Value> {
    let pre_tokenizer = pre_tokenizer_json(pre)?;
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges},
    }))
}

/// Hugging Face JSON for a SentencePiece BPE vocabulary with scores, tokenizing as SentencePiece
/// and llama.cpp do: spaces become `▁`, one `▁` is prepended (`add_space_prefix`), and adjacent
/// pieces merge highest score first, with unknown characters falling back to `<0xNN>` bytes.
///
/// Hugging Face BPE applies merges by rank, so the merges are derived from the scores: every way
/// to split a piece into two pieces of the vocabulary is a merge ranked by the whole piece's
/// score (ties by the parts' ids), which makes "lowest rank first" the same choice as "highest
/// score first".
#[allow(clippy::too_many_arguments)]
fn sentencepiece_json(
    tokens: &[String],
    vocab: serde_json::Map<String, Value>,
    scores: &[f64],
    types: &[i64],
    unk: Option<u32>,
    add_space_prefix: bool,
    added: Vec<Value>,
    post_processor: Value,
) -> Value {
    const TOKEN_NORMAL: i64 = 1;
    let id: std::collections::HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (piece, t) in tokens.iter().enumerate() {
        if types[piece] != TOKEN_NORMAL && types[piece] != TOKEN_USER_DEFINED {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (id.get(&t[..cut]), id.get(&t[cut..])) {
                merges.push((scores[piece], l, r, piece));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.cmp(&b.3)).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<Value> = merges.iter().map(|&(_, l, r, _)| json!([tokens[l], tokens[r]])).collect();
    let replace = |from: &str, to: &str| json!({"type": "Replace", "pattern": {"String": from}, "content": to});
    let mut normalizers = vec![replace(" ", "▁")];
    let mut decoders = vec![replace("▁", " "), json!({"type": "ByteFallback"}), json!({"type": "Fuse"})];
    if add_space_prefix {
        normalizers.insert(0, json!({"type": "Prepend", "prepend": "▁"}));
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers}, "pre_tokenizer": null,
        "post_processor": post_processor, "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk.map(|u| tokens[u as usize].clone()),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges},
    })
}
