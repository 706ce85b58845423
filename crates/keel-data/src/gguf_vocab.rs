//! A tokenizer as GGUF metadata (`tokenizer.ggml.*`), for `keel export --gguf`: the inverse of
//! [`Tokenizer::from_gguf`].
//!
//! - Byte-level BPE (`gpt2`): the vocabulary, the merges, token types (control for special added
//!   tokens, user-defined for the others) and the pre-tokenizer's llama.cpp name, found by
//!   comparing the tokenizer's pre-tokenizer with the ones keel builds for each name.
//! - SentencePiece (`llama`; a BPE with byte fallback in Hugging Face JSON): llama.cpp merges
//!   adjacent pieces highest score first, while the JSON holds merges by rank. Each piece gets
//!   the score −(rank of the first merge that makes it), so "highest score first" picks the same
//!   merge as "lowest rank first"; pieces no merge makes (single characters, bytes, special
//!   tokens) are never merge results and score below every merge. Reading the file back rebuilds
//!   the same merges.

use crate::tokenizer::{pre_tokenizer_json, Tokenizer, PRE_TOKENIZERS};
use anyhow::{bail, ensure, Context, Result};
use keel_model::gguf_write::GgufValue;
use serde_json::Value;
use std::collections::HashMap;

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// A merge's two parts, from either of the two forms Hugging Face writes.
fn merge_pair(m: &Value) -> Result<(String, String)> {
    match m {
        Value::String(s) => {
            let (l, r) = s.split_once(' ').with_context(|| format!("merge {s:?} has no space"))?;
            Ok((l.to_string(), r.to_string()))
        }
        Value::Array(pair) if pair.len() == 2 => {
            let part = |v: &Value| v.as_str().map(String::from).context("a merge holds a non-string");
            Ok((part(&pair[0])?, part(&pair[1])?))
        }
        other => bail!("merge {other} is neither \"a b\" nor [\"a\", \"b\"]"),
    }
}

impl Tokenizer {
    /// The `tokenizer.ggml.*` metadata llama.cpp reads.
    pub fn gguf_metadata(&self) -> Result<Vec<(String, GgufValue)>> {
        let json: Value = serde_json::from_str(self.to_json())?;
        let model = &json["model"];
        ensure!(model["type"] == "BPE", "only BPE tokenizers can be written to GGUF (this one is {})", model["type"]);
        let vocab = model["vocab"].as_object().context("tokenizer.json has no model.vocab")?;
        let mut by_id: Vec<Option<String>> = Vec::new();
        let mut put = |id: usize, text: &str| {
            if by_id.len() <= id {
                by_id.resize(id + 1, None);
            }
            by_id[id] = Some(text.to_string());
        };
        for (text, id) in vocab {
            put(id.as_u64().context("a vocabulary id is not a number")? as usize, text);
        }
        let mut added: HashMap<usize, bool> = HashMap::new();
        for t in json["added_tokens"].as_array().into_iter().flatten() {
            let id = t["id"].as_u64().context("an added token without an id")? as usize;
            put(id, t["content"].as_str().context("an added token without content")?);
            added.insert(id, t["special"].as_bool().unwrap_or(false));
        }
        let tokens: Vec<String> = by_id
            .into_iter()
            .enumerate()
            .map(|(id, t)| t.with_context(|| format!("token id {id} has no text in tokenizer.json")))
            .collect::<Result<_>>()?;
        let merges: Vec<(String, String)> =
            model["merges"].as_array().into_iter().flatten().map(merge_pair).collect::<Result<_>>()?;
        let sentencepiece = model["byte_fallback"].as_bool().unwrap_or(false);
        let unk = model["unk_token"].as_str();
        let types: Vec<i32> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| match added.get(&id) {
                _ if sentencepiece && Some(t.as_str()) == unk => UNKNOWN,
                Some(true) => CONTROL,
                Some(false) => USER_DEFINED,
                None if sentencepiece && t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') => BYTE,
                None => NORMAL,
            })
            .collect();
        let mut out = vec![
            ("tokenizer.ggml.model".to_string(), GgufValue::Str(if sentencepiece { "llama" } else { "gpt2" }.into())),
            ("tokenizer.ggml.tokens".into(), GgufValue::Strings(tokens.clone())),
            ("tokenizer.ggml.token_type".into(), GgufValue::I32s(types)),
        ];
        if sentencepiece {
            out.push(("tokenizer.ggml.scores".into(), GgufValue::F32s(scores_from_merges(&tokens, &merges)?)));
            let prefix = json["normalizer"]["normalizers"]
                .as_array()
                .is_some_and(|n| n.iter().any(|x| x["type"] == "Prepend" && x["prepend"] == "▁"));
            out.push(("tokenizer.ggml.add_space_prefix".into(), GgufValue::Bool(prefix)));
            if let Some(id) = unk.and_then(|u| tokens.iter().position(|t| t == u)) {
                out.push(("tokenizer.ggml.unknown_token_id".into(), GgufValue::U32(id as u32)));
            }
        } else {
            let merges = merges.iter().map(|(l, r)| format!("{l} {r}")).collect();
            out.push(("tokenizer.ggml.merges".into(), GgufValue::Strings(merges)));
            out.push(("tokenizer.ggml.pre".into(), GgufValue::Str(pre_name(&json["pre_tokenizer"])?.into())));
        }
        for (key, token) in [("bos", &self.bos), ("eos", &self.eos)] {
            if let Some((id, _)) = token {
                out.push((format!("tokenizer.ggml.{key}_token_id"), GgufValue::U32(*id)));
            }
        }
        out.push(("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(self.add_bos)));
        out.push(("tokenizer.ggml.add_eos_token".into(), GgufValue::Bool(false)));
        Ok(out)
    }
}

/// llama.cpp's name for a byte-level pre-tokenizer.
fn pre_name(pre: &Value) -> Result<&'static str> {
    for name in PRE_TOKENIZERS {
        if pre_tokenizer_json(name)? == *pre {
            return Ok(name);
        }
    }
    bail!(
        "this tokenizer's pre-tokenizer is none that keel can name for llama.cpp ({}); llama.cpp would split \
         text differently, so the export is refused",
        PRE_TOKENIZERS.join(", ")
    )
}

/// SentencePiece scores from merge ranks (see the module's documentation); pieces no merge makes
/// score below every merge.
fn scores_from_merges(tokens: &[String], merges: &[(String, String)]) -> Result<Vec<f32>> {
    let id: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    ensure!(merges.len() < 1 << 24, "{} merges: too many for exact float32 ranks", merges.len());
    let mut scores = vec![-(merges.len() as f32) - 1.0; tokens.len()];
    let mut seen = vec![false; tokens.len()];
    for (rank, (l, r)) in merges.iter().enumerate() {
        let piece = format!("{l}{r}");
        let &p = id
            .get(piece.as_str())
            .with_context(|| format!("merge {l:?} + {r:?} makes {piece:?}, not in the vocabulary"))?;
        if !seen[p] {
            seen[p] = true;
            scores[p] = -(rank as f32);
        }
    }
    Ok(scores)
}
