//! `ModelConfig`: the architecture of a Llama-family model, read from a Hugging Face `config.json`.

use anyhow::{bail, ensure, Context, Result};
use keel_kernels::glu::Gate;
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
    /// Gemma 3's text model (`gemma3_text`): GeGLU with tanh GELU, `1 + w` RMSNorm gains, q/k
    /// norms, norms after attention and after the MLP too, embeddings scaled by √hidden,
    /// `query_pre_attn_scalar`, and sliding-window layers with their own RoPE base.
    Gemma3,
}

impl Arch {
    /// The `model_type` string of Hugging Face's `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3_text",
        }
    }
    fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Mistral => "MistralForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
            Arch::Gemma3 => "Gemma3ForCausalLM",
        }
    }
    /// Whether q, k and v projections carry a bias (Qwen2 only).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }
    /// Whether q and k get a per-head RMSNorm before RoPE (Qwen3, Gemma 3).
    pub fn qk_norm(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Gemma3)
    }
    /// Whether the attention output and the MLP output are normalized before each residual
    /// add (Gemma 3).
    pub fn post_norms(self) -> bool {
        self == Arch::Gemma3
    }
    /// What the stored RMSNorm weights add to: Gemma's gain is `1 + w`, everyone else's `w`.
    pub fn norm_offset(self) -> f32 {
        if self == Arch::Gemma3 {
            1.0
        } else {
            0.0
        }
    }
    /// The MLP's activation: GeGLU for Gemma, SwiGLU for the rest.
    pub fn gate(self) -> Gate {
        if self == Arch::Gemma3 {
            Gate::GeluTanh
        } else {
            Gate::Silu
        }
    }
}

/// Whether a layer attends to the whole past or to a sliding window of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Every earlier token (`full_attention`).
    Full,
    /// The last `sliding_window` tokens (`sliding_attention`).
    Sliding,
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
    /// Attention window of the sliding-window layers: a query sees the keys less than this many
    /// positions before it (itself included). Mistral refuses longer training sequences.
    pub sliding_window: Option<usize>,
    /// Each layer's attention, bottom first (`layer_types`): all `Full` without a window, all
    /// `Sliding` for Mistral, Gemma 3's pattern of local and global layers.
    pub layer_kinds: Vec<LayerKind>,
    /// RoPE base of the sliding layers when it differs from `rope_theta` (Gemma 3's
    /// `rope_local_base_freq`); those layers use no RoPE scaling.
    pub rope_local_theta: Option<f64>,
    /// Attention scores are `q·kᵀ / √query_pre_attn_scalar` (Gemma); `None` is `√head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
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
        let (arch, model_type) = read_arch(obj)?;
        refuse_what_keel_computes_differently(obj, arch, model_type)?;
        let gemma = arch == Arch::Gemma3;
        let hidden_size = req_usize(obj, "hidden_size")?;
        let num_layers = req_usize(obj, "num_hidden_layers")?;
        let num_heads = req_usize(obj, "num_attention_heads")?;
        let num_kv_heads = opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 {
            bail!("num_attention_heads ({num_heads}) and num_key_value_heads ({num_kv_heads}) must be positive");
        }
        let head_dim = match opt_usize(obj, "head_dim")? {
            Some(d) => d,
            None if gemma => 256,
            None => {
                if hidden_size % num_heads != 0 {
                    bail!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads} and no head_dim is given");
                }
                hidden_size / num_heads
            }
        };
        let (rope_theta, rope_scaling, rope_local_theta) = if gemma {
            read_gemma_rope(obj)?
        } else {
            let (theta, scaling) = read_rope(obj)?;
            (theta, scaling, None)
        };
        let sliding_window = match arch {
            Arch::Mistral => opt_usize(obj, "sliding_window")?,
            Arch::Gemma3 => Some(opt_usize(obj, "sliding_window")?.unwrap_or(4096)),
            Arch::Qwen2 | Arch::Qwen3 if obj.get("use_sliding_window").and_then(Value::as_bool) == Some(true) => {
                bail!("use_sliding_window: true is not supported for {model_type}")
            }
            _ => None,
        };
        // Each layer holds at least two norms: a crafted size fails here, before the list of
        // layer kinds is allocated.
        crate::limits::ensure_fits(
            crate::limits::product(&[num_layers, hidden_size, 8]),
            format_args!("a model with hidden_size {hidden_size}, num_hidden_layers {num_layers}"),
        )?;
        let layer_kinds = match arch {
            Arch::Gemma3 => read_layer_kinds(obj, num_layers)?,
            _ if sliding_window.is_some() => vec![LayerKind::Sliding; num_layers],
            _ => vec![LayerKind::Full; num_layers],
        };
        let query_pre_attn_scalar =
            if gemma { Some(obj.get("query_pre_attn_scalar").and_then(Value::as_f64).unwrap_or(256.0)) } else { None };
        let config = ModelConfig {
            arch,
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: req_usize(obj, "intermediate_size")?,
            vocab_size: req_usize(obj, "vocab_size")?,
            rms_norm_eps: obj.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_word_embeddings: obj
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(matches!(arch, Arch::Qwen2 | Arch::Gemma3)),
            max_position_embeddings: opt_usize(obj, "max_position_embeddings")?.unwrap_or(2048),
            sliding_window,
            layer_kinds,
            rope_local_theta,
            query_pre_attn_scalar,
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
        ensure!(
            c.layer_kinds.len() == c.num_layers,
            "{} layer types for {} layers (layer_types must name every layer)",
            c.layer_kinds.len(),
            c.num_layers
        );
        if c.layer_kinds.contains(&LayerKind::Sliding) {
            ensure!(c.sliding_window.is_some_and(|w| w > 0), "sliding-window layers need a positive sliding_window");
        }
        if let Some(s) = c.query_pre_attn_scalar {
            ensure!(s > 0.0 && s.fract() == 0.0, "query_pre_attn_scalar ({s}) must be a positive integer");
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
            product(&[4, h]),
            product(&[2, d]),
        ]
        .iter()
        .fold(0u128, |a, &b| a.saturating_add(b));
        let heads = if c.tie_word_embeddings { 1 } else { 2 };
        product(&[c.num_layers]).saturating_mul(per_layer).saturating_add(product(&[heads, c.vocab_size, h]))
    }

    /// The sliding window of layer `l`'s attention; `None` for a full-attention layer.
    pub fn window(&self, l: usize) -> Option<usize> {
        (self.layer_kinds[l] == LayerKind::Sliding).then_some(self.sliding_window).flatten()
    }

    /// The factor on attention scores: `1/√query_pre_attn_scalar`, else `1/√head_dim`.
    pub fn attn_scale(&self) -> f64 {
        1.0 / self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64).sqrt()
    }

    /// What embeddings are multiplied by on the way in: Gemma's √hidden_size (rounded to f32,
    /// as transformers does), else nothing.
    pub fn embed_scale(&self) -> Option<f32> {
        (self.arch == Arch::Gemma3).then(|| (self.hidden_size as f64).sqrt() as f32)
    }

    /// RoPE inverse frequencies for one head of a `kind` layer, `[head_dim / 2]`, as
    /// transformers computes them.
    pub fn rope_inv_freq(&self, kind: LayerKind) -> Vec<f32> {
        let (theta, scaling) = match (kind, self.rope_local_theta) {
            (LayerKind::Sliding, Some(local)) => (local, None),
            _ => (self.rope_theta, self.rope_scaling.as_ref()),
        };
        let d = self.head_dim;
        let base: Vec<f32> =
            (0..d / 2).map(|i| (1.0 / theta.powf(((2 * i) as f32 / d as f32) as f64)) as f32).collect();
        let Some(s) = scaling else { return base };
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
            Arch::Gemma3 => {
                o.remove("hidden_act");
                let mut full = json!({"rope_type": "default", "rope_theta": self.rope_theta});
                if let Some(scaling) = o.remove("rope_scaling") {
                    full = scaling;
                    full["rope_theta"] = json!(self.rope_theta);
                }
                let local =
                    json!({"rope_type": "default", "rope_theta": self.rope_local_theta.unwrap_or(self.rope_theta)});
                o.remove("rope_theta");
                let types: Vec<&str> = self
                    .layer_kinds
                    .iter()
                    .map(|k| if *k == LayerKind::Full { "full_attention" } else { "sliding_attention" })
                    .collect();
                for (key, value) in [
                    ("hidden_activation", json!("gelu_pytorch_tanh")),
                    ("rope_parameters", json!({"full_attention": full, "sliding_attention": local})),
                    // An integer, as transformers' strict Gemma3TextConfig requires.
                    ("query_pre_attn_scalar", json!(self.query_pre_attn_scalar.map(|x| x.round() as u64))),
                    ("sliding_window", json!(self.sliding_window)),
                    ("layer_types", json!(types)),
                    ("final_logit_softcapping", Value::Null),
                    ("attn_logit_softcapping", Value::Null),
                ] {
                    o.insert(key.into(), value);
                }
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

/// The family a config's `model_type` names, and that name.
fn read_arch(obj: &Map<String, Value>) -> Result<(Arch, &str)> {
    let model_type = obj.get("model_type").and_then(Value::as_str).context("missing \"model_type\"")?;
    let arch = match model_type {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "gemma3_text" => Arch::Gemma3,
        "gemma3" => bail!(
            "model_type \"gemma3\" is Gemma 3's multimodal model (a vision tower and a text model); keel trains text models: use a text-only checkpoint (model_type \"gemma3_text\", e.g. google/gemma-3-270m or google/gemma-3-1b-pt)"
        ),
        other => bail!(
            "model_type \"{other}\" is not supported (keel supports llama, mistral, qwen2, qwen3, gemma3_text)"
        ),
    };
    Ok((arch, model_type))
}

/// Refuses what transformers would compute differently from keel for this family: a multimodal
/// config, another activation, biases, bidirectional attention, logit soft-capping.
fn refuse_what_keel_computes_differently(obj: &Map<String, Value>, arch: Arch, model_type: &str) -> Result<()> {
    if let Some(key) = ["vision_config", "text_config"].into_iter().find(|k| obj.contains_key(*k)) {
        bail!("the config has a \"{key}\": multimodal models are not supported; use a text-only checkpoint");
    }
    let (act_key, want_act) =
        if arch == Arch::Gemma3 { ("hidden_activation", "gelu_pytorch_tanh") } else { ("hidden_act", "silu") };
    let act = obj.get(act_key).or_else(|| obj.get("hidden_act")).and_then(Value::as_str).unwrap_or(want_act);
    if act != want_act {
        bail!("{act_key} \"{act}\" is not supported for {model_type} (only {want_act})");
    }
    for key in ["attention_bias", "mlp_bias"] {
        if obj.get(key).and_then(Value::as_bool) == Some(true) {
            bail!("\"{key}\": true is not supported for {model_type}");
        }
    }
    if obj.get("use_bidirectional_attention").and_then(Value::as_bool) == Some(true) {
        bail!("\"use_bidirectional_attention\": true (an embedding model) is not supported; keel trains causal LMs");
    }
    for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if obj.get(key).is_some_and(|v| !v.is_null()) {
            bail!("\"{key}\" is not supported (keel computes logits without soft-capping; Gemma 3 sets it to null)");
        }
    }
    Ok(())
}

/// Gemma 3's two RoPE bases, `(global theta, its scaling, local theta)`: from `rope_parameters`
/// by layer type (`full_attention`, `sliding_attention`), or from the older top-level
/// `rope_theta` (default 1e6), `rope_scaling` and `rope_local_base_freq` (default 1e4).
fn read_gemma_rope(obj: &Map<String, Value>) -> Result<(f64, Option<Llama3RopeScaling>, Option<f64>)> {
    if let Some(p) = obj.get("rope_parameters").filter(|p| p.get("full_attention").is_some()) {
        let global = Map::from_iter([("rope_parameters".to_string(), p["full_attention"].clone())]);
        let (theta, scaling) = read_rope(&global)?;
        let local = p.get("sliding_attention").filter(|v| !v.is_null());
        let local_theta = match local {
            Some(l) => {
                let kind = l.get("rope_type").and_then(Value::as_str).unwrap_or("default");
                ensure!(kind == "default", "sliding_attention rope_type \"{kind}\" is not supported (only default)");
                l.get("rope_theta").and_then(Value::as_f64).context("sliding_attention lacks \"rope_theta\"")?
            }
            None => 10000.0,
        };
        return Ok((theta, scaling, Some(local_theta)));
    }
    let (mut theta, scaling) = read_rope(obj)?;
    if obj.get("rope_theta").is_none() {
        theta = 1_000_000.0;
    }
    let local = obj.get("rope_local_base_freq").and_then(Value::as_f64).unwrap_or(10000.0);
    Ok((theta, scaling, Some(local)))
}

/// Gemma 3's layer kinds: `layer_types` (`sliding_attention` / `full_attention` per layer), or
/// the older `sliding_window_pattern` N (default 6): every Nth layer is global.
fn read_layer_kinds(obj: &Map<String, Value>, num_layers: usize) -> Result<Vec<LayerKind>> {
    if let Some(types) = obj.get("layer_types").filter(|v| !v.is_null()) {
        let types = types.as_array().context("\"layer_types\" must be a list of strings")?;
        ensure!(
            types.len() == num_layers,
            "\"layer_types\" names {} layers, num_hidden_layers is {num_layers}",
            types.len()
        );
        return types
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some("full_attention") => Ok(LayerKind::Full),
                Some("sliding_attention") => Ok(LayerKind::Sliding),
                _ => bail!("layer_types[{i}] is {t}: keel knows \"full_attention\" and \"sliding_attention\""),
            })
            .collect();
    }
    let pattern = opt_usize(obj, "sliding_window_pattern")?.unwrap_or(6);
    ensure!(pattern > 0, "\"sliding_window_pattern\" must be positive");
    Ok((0..num_layers).map(|i| if (i + 1) % pattern == 0 { LayerKind::Full } else { LayerKind::Sliding }).collect())
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
        let f = c.rope_inv_freq(LayerKind::Full);
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

    fn gemma() -> Value {
        json!({"model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18, "num_attention_heads": 4,
               "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 2048, "vocab_size": 262144,
               "query_pre_attn_scalar": 256, "sliding_window": 512, "rope_theta": 1000000.0,
               "rope_local_base_freq": 10000.0, "rope_scaling": null, "hidden_activation": "gelu_pytorch_tanh",
               "final_logit_softcapping": null, "attn_logit_softcapping": null, "_sliding_window_pattern": 6})
    }

    #[test]
    fn reads_gemma3_from_old_and_new_layouts_and_writes_what_it_reads() {
        let c = ModelConfig::from_hf_json(&gemma()).unwrap();
        assert_eq!((c.arch, c.tie_word_embeddings, c.sliding_window), (Arch::Gemma3, true, Some(512)));
        let global: Vec<usize> = (0..18).filter(|&l| c.window(l).is_none()).collect();
        assert_eq!(global, [5, 11, 17], "every sixth layer is global");
        assert_eq!((c.rope_theta, c.rope_local_theta), (1e6, Some(1e4)));
        assert_eq!(c.attn_scale(), 1.0 / 16.0);
        assert_eq!(c.embed_scale(), Some(640f64.sqrt() as f32));
        let local = c.rope_inv_freq(LayerKind::Sliding);
        assert_eq!(
            (local[1], c.rope_inv_freq(LayerKind::Full)[1]),
            ((1e4f64.powf(-2.0 / 256.0)) as f32, (1e6f64.powf(-2.0 / 256.0)) as f32)
        );
        let written = c.to_hf_json();
        assert_eq!(written["rope_parameters"]["sliding_attention"]["rope_theta"], json!(10000.0));
        assert_eq!(written["layer_types"][5], json!("full_attention"));
        assert!(written["query_pre_attn_scalar"].is_u64(), "transformers refuses 256.0");
        assert_eq!(ModelConfig::from_hf_json(&written).unwrap(), c);
        // layer_types wins over the pattern; the new nested rope_parameters are read.
        let mut v = gemma();
        v["num_hidden_layers"] = json!(3);
        v["layer_types"] = json!(["full_attention", "sliding_attention", "sliding_attention"]);
        v["rope_parameters"] = json!({"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                                      "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}});
        let c = ModelConfig::from_hf_json(&v).unwrap();
        assert_eq!(c.layer_kinds, [LayerKind::Full, LayerKind::Sliding, LayerKind::Sliding]);
        assert_eq!((c.rope_theta, c.rope_local_theta), (5e5, Some(2e4)));
    }

    #[test]
    fn refuses_gemma3_variants_it_would_compute_differently() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["model_type"] = json!("gemma3")), "multimodal"),
            (Box::new(|v| v["vision_config"] = json!({"model_type": "siglip_vision_model"})), "vision_config"),
            (Box::new(|v| v["layer_types"] = json!(vec!["full_attention"; 18])), "full_attention"),
            (Box::new(|v| v["layer_types"] = json!(vec!["chunked_attention"; 18])), "layer_types[0]"),
            (Box::new(|v| v["layer_types"] = json!(vec!["full_attention"; 17])), "names 17 layers"),
            (Box::new(|v| v["final_logit_softcapping"] = json!(30.0)), "final_logit_softcapping"),
            (Box::new(|v| v["hidden_activation"] = json!("gelu")), "hidden_activation"),
            (Box::new(|v| v["use_bidirectional_attention"] = json!(true)), "use_bidirectional_attention"),
        ];
        for (i, (edit, needle)) in cases.into_iter().enumerate() {
            let mut v = gemma();
            edit(&mut v);
            match ModelConfig::from_hf_json(&v) {
                Ok(_) if i == 2 => {} // all global is a valid pattern
                Ok(_) => panic!("case {i} accepted"),
                Err(e) => assert!(format!("{e:#}").contains(needle), "{e:#} should mention {needle:?}"),
            }
        }
    }
}
