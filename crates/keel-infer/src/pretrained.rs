//! A model with its tokenizer and chat template, from a GGUF file, a Hugging Face directory or
//! the Hub (`hf:ORG/NAME[@REVISION]`), and its export as a Hugging Face directory or a GGUF file.

use crate::hub::{self, HubModel, HubOptions};
use anyhow::{bail, Context, Result};
use keel_data::chat::{named_template, ChatTemplate, NAMED_TEMPLATES};
use keel_data::tokenizer::Tokenizer;
use keel_model::gguf::{GgufFile, MetaValue};
use keel_model::gguf_write::{ExportType, GgufValue, GgufWriter};
use keel_model::Transformer;
use serde_json::{json, Value};
use std::path::Path;

/// The default model's file name (SmolLM2-135M-Instruct, Q4_1 GGUF).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where scripts/fetch-model.sh puts the default model: `$KEEL_MODELS`, else `<root>/models`.
pub fn default_model_path(root: &Path) -> std::path::PathBuf {
    std::env::var_os("KEEL_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("models"))
        .join(DEFAULT_MODEL_FILE)
}

/// Everything needed to run a model on text: weights, tokenizer and chat template.
pub struct Pretrained {
    /// The weights in f32 (a quantized GGUF is dequantized on load).
    pub model: Transformer,
    /// Text ↔ token ids, with the BOS/EOS tokens the model declares.
    pub tokenizer: Tokenizer,
    /// Renders chat messages as the prompt format the model was trained on; `None` when the model
    /// ships without one (a base model), which training refuses.
    pub chat_template: Option<ChatTemplate>,
}

impl Pretrained {
    /// Loads `path`: a `.gguf` file, a directory with `config.json`, safetensors weights,
    /// `tokenizer.json` and (for the chat template) `tokenizer_config.json`, or such a directory
    /// on the Hub as `hf:ORG/NAME[@REVISION]` (fetched into the Hugging Face cache as the `HF_*`
    /// variables say; see [`crate::hub`]).
    pub fn load(path: &Path) -> Result<Self> {
        if let Some(model) = HubModel::from_path(path) {
            let dir = hub::resolve(&model?, &HubOptions::from_env()?)?;
            return Self::load_local(&dir);
        }
        Self::load_local(path)
    }

    fn load_local(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("model {} does not exist (run scripts/fetch-model.sh for the default model)", path.display());
        }
        if path.is_file() {
            return Self::load_gguf(path);
        }
        let model = Transformer::load(path)?;
        let tokenizer = Tokenizer::from_file(path)?;
        let template = read_template(&path.join("tokenizer_config.json"))?;
        Self::assemble(model, tokenizer, template)
    }

    fn load_gguf(path: &Path) -> Result<Self> {
        let model = Transformer::load_gguf(path)?;
        let g = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&g).with_context(|| format!("{}", path.display()))?;
        let template = g.meta("tokenizer.chat_template").and_then(MetaValue::as_str).map(String::from);
        Self::assemble(model, tokenizer, template)
    }

    fn assemble(model: Transformer, tokenizer: Tokenizer, template: Option<String>) -> Result<Self> {
        let chat_template = template.map(|t| compile_template(&t, &tokenizer)).transpose()?;
        Ok(Pretrained { model, tokenizer, chat_template })
    }

    /// Replaces the model's chat template (or gives a base model one): `spec` names a format
    /// keel ships (`gemma`, `chatml`) or a file holding a Jinja template.
    pub fn set_chat_template(&mut self, spec: &str) -> Result<()> {
        let source = match named_template(spec) {
            Some(t) => t.source.to_string(),
            None if Path::new(spec).is_file() => {
                std::fs::read_to_string(spec).with_context(|| format!("cannot read the chat template {spec}"))?
            }
            None => {
                let names: Vec<&str> = NAMED_TEMPLATES.iter().map(|t| t.name).collect();
                bail!("chat template \"{spec}\" is neither a format keel ships ({}) nor a file", names.join(", "))
            }
        };
        let template = compile_template(&source, &self.tokenizer).with_context(|| format!("chat template {spec}"))?;
        if let Some(end) = template.end_of_turn {
            self.tokenizer.token_to_id(end).with_context(|| {
                format!(
                    "the {spec} chat template ends turns with {end}, which is not a token of this model's vocabulary"
                )
            })?;
        }
        self.chat_template = Some(template);
        Ok(())
    }

    /// Token ids that end generation: the tokenizer's EOS, the config's if different, and the
    /// end of a turn of a chat format keel ships.
    pub fn stop_ids(&self) -> Vec<u32> {
        let turn_end = self.chat_template.as_ref().and_then(|t| self.tokenizer.token_to_id(t.end_of_turn?));
        let mut ids: Vec<u32> = self
            .tokenizer
            .eos
            .iter()
            .map(|(id, _)| *id)
            .chain(self.model.config.eos_token_id)
            .chain(turn_end)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Writes a Hugging Face directory: weights, config, tokenizer and its config with the chat
    /// template.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        self.model.save(dir)?;
        write(&dir.join("tokenizer.json"), self.tokenizer.to_json())?;
        let mut cfg = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.tokenizer.add_bos,
            "clean_up_tokenization_spaces": false,
            "model_max_length": self.model.config.max_position_embeddings,
        });
        for (key, token) in [("bos_token", &self.tokenizer.bos), ("eos_token", &self.tokenizer.eos)] {
            if let Some((_, s)) = token {
                cfg[key] = json!(s);
            }
        }
        if let Some(t) = &self.chat_template {
            cfg["chat_template"] = json!(t.source);
        }
        write(&dir.join("tokenizer_config.json"), &serde_json::to_string_pretty(&cfg)?)?;
        let mut gen = json!({"do_sample": false});
        if let Some((id, _)) = &self.tokenizer.eos {
            gen["eos_token_id"] = json!(id);
        }
        write(&dir.join("generation_config.json"), &serde_json::to_string_pretty(&gen)?)
    }
}

impl Pretrained {
    /// Writes a GGUF file llama.cpp and Ollama load: the weights (matrices as `kind`), the
    /// architecture's metadata, the tokenizer and the chat template. `name` goes to
    /// `general.name`.
    pub fn save_gguf(&self, path: &Path, kind: ExportType, name: &str) -> Result<()> {
        let mut w = GgufWriter::default();
        self.model.add_to_gguf(&mut w, kind, name)?;
        for (key, value) in self.tokenizer.gguf_metadata().context("the tokenizer cannot be written to GGUF")? {
            w.set(&key, value);
        }
        if let Some(t) = &self.chat_template {
            w.set("tokenizer.chat_template", GgufValue::Str(t.source.clone()));
        }
        w.write(path)
    }
}

/// Compiles a chat template with the tokenizer's BOS and EOS as `bos_token` and `eos_token`.
fn compile_template(source: &str, tokenizer: &Tokenizer) -> Result<ChatTemplate> {
    let special: Vec<(&str, &str)> = [("bos_token", &tokenizer.bos), ("eos_token", &tokenizer.eos)]
        .into_iter()
        .filter_map(|(k, t)| t.as_ref().map(|(_, s)| (k, s.as_str())))
        .collect();
    ChatTemplate::new(source, &special)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The `chat_template` of a `tokenizer_config.json`, if any (a string, or the default entry of
/// a list of named templates).
fn read_template(path: &Path) -> Result<Option<String>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let cfg: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(match cfg.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => None,
    })
}
