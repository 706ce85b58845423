//! `ModelConfig`: the architecture of a Llama-family model, read from a Hugging Face `config.json`.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The supported families. They share one `Transformer`; these switch its few differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1–3 and derivatives (e.g. SmolLM, TinyLlama).
    Llama,
    /// Like Llama, with an optional sliding attention window.
    Mistral,
    /// Bias on the q, k and v projections.
    Qwen2,
    /// RMSNorm on each head of q and k before RoPE.
    Qwen3,
}

impl Arch {
    /// The `model_type` string of Hugging Face's `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
    fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Mistral => "MistralForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
        }
    }
    /// Whether q, k and v projections carry a bias (Qwen2 only).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }
    /// Whether q and k get a per-head RMSNorm before RoPE (Qwen3 only).
    pub fn qk_norm(self) -> bool {
        self == Arch::Qwen3
    }
}

/// Llama 3's frequency-dependent RoPE scaling (`rope_type: "llama3"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    /// Divides the frequencies of long wavelengths (e.g. 8 for Llama 3.1).
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are not scaled.
    pub high_freq_factor: f64,
    /// The context length (tokens) the model was pretrained with before scaling.
    pub original_max_position_embeddings: f64,
}

#[derive(Clone, Debug, PartialEq)]
/// The architecture of a model: sizes, normalization, RoPE and token ids, as keel needs them.
pub struct ModelConfig {
    /// Model family; switches q/k/v bias and q/k norm.
    pub arch: Arch,
    /// Width of the residual stream (`d_model`).
    pub hidden_size: usize,
    /// Number of decoder layers (`num_hidden_layers`).
    pub num_layers: usize,
    /// Number of query heads (`num_attention_heads`).
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to `num_heads`. Divides it.
    pub num_kv_heads: usize,
    /// Width of one head; defaults to `hidden_size / num_heads`, but may differ (e.g. Qwen3).
    pub head_dim: usize,
    /// Width of the SwiGLU MLP's hidden layer (gate and up `[intermediate × hidden]`).
    pub intermediate_size: usize,
    /// Size of the vocabulary: rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Epsilon inside the RMSNorm square root; default 1e-6.
    pub rms_norm_eps: f64,
    /// RoPE base frequency; default 10000.
    pub rope_theta: f64,
    /// Llama 3 RoPE scaling, if the config has `rope_type: "llama3"`; `None` is plain RoPE.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// The LM head reuses the embedding matrix (no `lm_head.weight`); defaults to true for Qwen2 only.
    pub tie_word_embeddings: bool,
    /// Context length in tokens; longer sequences are refused. Default 2048.
    pub max_position_embeddings: usize,
    /// Attention window of Mistral-style sliding-window layers; sequences longer than it are refused.
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token, if the config names one (the first, if it names a list).
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token, if the config names one (the first, if it names a list).
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Reads `config.json` (a file, or the directory that holds it).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read the model config {}", file.display()))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))?;
        Self::from_hf_json(&value).with_context(|| format!("in {}", file.display()))
    }

    /// Interprets a Hugging Face config. Anything keel would compute differently from
    /// transformers (an unknown family, activation, RoPE type or bias layout) is an error.
    pub fn from_hf_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().context("the config is not a JSON object")?;
        let model_type = obj.get("model_type").and_then(Value::as_str).context("missing \"model_type\"")?;
        let arch = match model_type {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => bail!("model_type \"{other}\" is not supported (keel supports llama, mistral, qwen2, qwen3)"),
        };
        let act = obj.get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
        if act != "silu" {
            bail!("hidden_act \"{act}\" is not supported (only silu, the SwiGLU MLP)");
        }
        for key in ["attention_bias", "mlp_bias"] {
            if obj.get(key).and_then(Value::as_bool) == Some(true) {
                bail!("\"{key}\": true is not supported for {model_type}");
            }
        }
        let hidden_size = req_usize(obj, "hidden_size")?;
        let num_heads = req_usize(obj, "num_attention_heads")?;
        let num_kv_heads = opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 {
            bail!("num_attention_heads ({num_heads}) and num_key_value_heads ({num_kv_heads}) must be positive");
        }
        let head_dim = match opt_usize(obj, "head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_heads != 0 {
                    bail!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads} and no head_dim is given");
                }
                hidden_size / num_heads
            }
        };
        let (rope_theta, rope_scaling) = read_rope(obj)?;
        let sliding_window = match arch {
            Arch::Mistral => opt_usize(obj, "sliding_window")?,
            Arch::Qwen2 | Arch::Qwen3 if obj.get("use_sliding_window").and_then(Value::as_bool) == Some(true) => {
                bail!("use_sliding_window: true is not supported for {model_type}")
            }
            _ => None,
        };
        let config = ModelConfig {
            arch,
            hidden_size,
            num_layers: req_usize(obj, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: req_usize(obj, "intermediate_size")?,
            vocab_size: req_usize(obj, "vocab_size")?,
            rms_norm_eps: obj.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_word_embeddings: obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(arch == Arch::Qwen2),
            max_position_embeddings: opt_usize(obj, "max_position_embeddings")?.unwrap_or(2048),
            sliding_window,
            bos_token_id: opt_token(obj, "bos_token_id"),
            eos_token_id: opt_token(obj, "eos_token_id"),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        for (name, v) in [
            ("hidden_size", c.hidden_size),
            ("num_hidden_layers", c.num_layers),
            ("num_attention_heads", c.num_heads),
            ("num_key_value_heads", c.num_kv_heads),
            ("head_dim", c.head_dim),
            ("intermediate_size", c.intermediate_size),
            ("vocab_size", c.vocab_size),
        ] {
            if v == 0 {
                bail!("{name} must be positive");
            }
        }
        if !c.num_heads.is_multiple_of(c.num_kv_heads) {
            bail!("num_attention_heads {} is not a multiple of num_key_value_heads {}", c.num_heads, c.num_kv_heads);
        }
        if !c.head_dim.is_multiple_of(2) {
            bail!("head_dim {} must be even for rotary embeddings", c.head_dim);
        }
        // NaN fails these comparisons too.
        if c.rms_norm_eps.is_nan() || c.rms_norm_eps <= 0.0 || c.rope_theta.is_nan() || c.rope_theta <= 0.0 {
            bail!("rms_norm_eps ({}) and rope_theta ({}) must be positive", c.rms_norm_eps, c.rope_theta);
        }
        // Before anything is allocated: a crafted num_hidden_layers or hidden_size would otherwise
        // abort in the allocator (or overflow the layout's offsets).
        crate::limits::ensure_fits(
            self.num_params_u128().saturating_mul(4),
            format_args!(
                "a model with hidden_size {}, num_hidden_layers {}, intermediate_size {}, vocab_size {} (f32 weights)",
                c.hidden_size, c.num_layers, c.intermediate_size, c.vocab_size
            ),
        )
    }

    /// The parameter count in u128, saturating: no size a file can claim overflows it.
    fn num_params_u128(&self) -> u128 {
        use crate::limits::product;
        let c = self;
        let (h, d) = (c.hidden_size, c.head_dim);
        let width = c.num_heads.saturating_add(c.num_kv_heads.saturating_mul(2));
        let per_layer = [
            product(&[2, width, d, h]),
            product(&[3, c.intermediate_size, h]),
            product(&[width, d]),
            product(&[2, h]),
            product(&[2, d]),
        ]
        .iter()
        .fold(0u128, |a, &b| a.saturating_add(b));
        let heads = if c.tie_word_embeddings { 1 } else { 2 };
        product(&[c.num_layers]).saturating_mul(per_layer).saturating_add(product(&[heads, c.vocab_size, h]))
    }

    /// RoPE inverse frequencies for one head, `[head_dim / 2]`, as transformers computes them.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f32> =
            (0..d / 2).map(|i| (1.0 / self.rope_theta.powf(((2 * i) as f32 / d as f32) as f64)) as f32).collect();
        let Some(s) = &self.rope_scaling else { return base };
        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
        base.iter()
            .map(|&f| {
                let f = f as f64;
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let scaled = if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / s.factor
                } else {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f / s.factor + smooth * f
                };
                scaled as f32
            })
            .collect()
    }

    /// Number of parameters (the tied embedding counted once).
    pub fn num_params(&self) -> usize {
        crate::params::ParamLayout::new(self).total
    }

    /// A `config.json` that transformers loads as this architecture.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.model_type(),
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "torch_dtype": "float32",
        });
        let o = v.as_object_mut().expect("object literal");
        if let Some(s) = &self.rope_scaling {
            o.insert(
                "rope_scaling".into(),
                json!({"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                       "high_freq_factor": s.high_freq_factor,
                       "original_max_position_embeddings": s.original_max_position_embeddings}),
            );
        }
        match self.arch {
            Arch::Mistral => {
                o.insert("sliding_window".into(), json!(self.sliding_window));
            }
            Arch::Qwen2 | Arch::Qwen3 => {
                o.insert("use_sliding_window".into(), json!(false));
            }
            Arch::Llama => {}
        }
        if self.arch != Arch::Qwen2 {
            o.insert("attention_bias".into(), json!(false));
        }
        for (key, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if let Some(id) = id {
                o.insert(key.into(), json!(id));
            }
        }
        v
    }
}

/// `rope_theta` and the scaling, from the top level (`rope_theta`, `rope_scaling`) or from the
/// newer `rope_parameters` object.
fn read_rope(obj: &Map<String, Value>) -> Result<(f64, Option<Llama3RopeScaling>)> {
    let params = obj.get("rope_parameters").filter(|v| !v.is_null());
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .or_else(|| obj.get("rope_theta"))
        .map(|v| v.as_f64().context("rope_theta is not a number"))
        .transpose()?
        .unwrap_or(10000.0);
    let scaling = params.or_else(|| obj.get("rope_scaling").filter(|v| !v.is_null()));
    let Some(s) = scaling else { return Ok((theta, None)) };
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    match kind {
        "default" => Ok((theta, None)),
        "llama3" => {
            let num = |k: &str| {
                s.get(k).and_then(Value::as_f64).with_context(|| format!("llama3 rope scaling lacks \"{k}\""))
            };
            Ok((
                theta,
                Some(Llama3RopeScaling {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_max_position_embeddings: num("original_max_position_embeddings")?,
                }),
            ))
        }
        other => bail!("rope scaling type \"{other}\" is not supported (only llama3)"),
    }
}

fn opt_usize(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|x| Some(x as usize))
            .with_context(|| format!("\"{key}\" must be a non-negative integer, found {v}")),
    }
}

fn req_usize(obj: &Map<String, Value>, key: &str) -> Result<usize> {
    opt_usize(obj, key)?.with_context(|| format!("missing \"{key}\""))
}

/// A token id; lists (several EOS ids) keep their first entry.
fn opt_token(obj: &Map<String, Value>, key: &str) -> Option<u32> {
    match obj.get(key)? {
        Value::Array(a) => a.first()?.as_u64().map(|x| x as u32),
        v => v.as_u64().map(|x| x as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
               "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152, "rms_norm_eps": 1e-5,
               "rope_theta": 100000.0, "tie_word_embeddings": true})
    }

    #[test]
    fn reads_llama_and_derives_head_dim() {
        let c = ModelConfig::from_hf_json(&base()).unwrap();
        assert_eq!((c.head_dim, c.num_kv_heads, c.tie_word_embeddings), (64, 3, true));
        assert_eq!(c.rope_theta, 100000.0);
        let again = ModelConfig::from_hf_json(&c.to_hf_json()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn reads_rope_parameters_layout_and_llama3_scaling() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("rope_theta");
        v["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = ModelConfig::from_hf_json(&v).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling.as_ref().unwrap().factor, 8.0);
        let f = c.rope_inv_freq();
        assert_eq!(f[0], 1.0, "high frequencies are not scaled");
        let unscaled = (1.0 / 500000f64.powf(62.0 / 64.0)) as f32;
        assert!((f[31] - unscaled / 8.0).abs() < 1e-12, "low frequencies are divided by the factor");
    }

    #[test]
    fn rejects_what_it_cannot_compute() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["model_type"] = json!("gemma3")), "gemma3"),
            (Box::new(|v| v["num_attention_heads"] = json!(0)), "must be positive"),
            (Box::new(|v| v["num_key_value_heads"] = json!(2)), "not a multiple"),
            (Box::new(|v| v["hidden_size"] = json!(577)), "not divisible"),
            (Box::new(|v| v["hidden_act"] = json!("gelu")), "gelu"),
            (Box::new(|v| v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0})), "yarn"),
            (Box::new(|v| v["attention_bias"] = json!(true)), "attention_bias"),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("vocab_size");
                }),
                "vocab_size",
            ),
        ];
        for (edit, needle) in cases {
            let mut v = base();
            edit(&mut v);
            let err = format!("{:#}", ModelConfig::from_hf_json(&v).unwrap_err());
            assert!(err.contains(needle), "error {err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn refuses_sizes_beyond_memory_before_allocating() {
        for (key, value) in [("num_hidden_layers", json!(1_000_000_000_000u64)), ("hidden_size", json!(9u64 << 40))] {
            let mut v = base();
            v[key] = value;
            if key == "hidden_size" {
                v["head_dim"] = json!(64);
            }
            let err = format!("{:#}", ModelConfig::from_hf_json(&v).unwrap_err());
            assert!(err.contains("more than this machine's") && err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn qwen_families_switch_bias_and_qk_norm() {
        let mut v = base();
        v["model_type"] = json!("qwen2");
        assert!(ModelConfig::from_hf_json(&v).unwrap().arch.qkv_bias());
        v["model_type"] = json!("qwen3");
        v["head_dim"] = json!(128);
        let c = ModelConfig::from_hf_json(&v).unwrap();
        assert!(c.arch.qk_norm() && c.head_dim == 128);
    }
}
