//! Where every parameter lives in one flat buffer, under its Hugging Face name.
//!
//! Parameters, gradients and optimizer moments share this layout, so each is a single `Vec<f32>`
//! allocated once, and whole-model operations (clipping, AdamW, L2 to the initial weights) are
//! loops over one slice.

use crate::config::ModelConfig;
use std::ops::Range;

/// One named tensor of the model.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Dimensions as in the checkpoint, outermost first: `[out × in]` for a linear weight.
    pub shape: Vec<usize>,
    /// Where the tensor's values lie in the flat buffer.
    pub range: Range<usize>,
}

impl TensorSpec {
    /// Norm gains and biases (1-D) are conventionally exempt from weight decay.
    pub fn is_matrix(&self) -> bool {
        self.shape.len() >= 2
    }
}

/// Ranges of one decoder layer's tensors.
#[derive(Clone, Debug)]
pub struct LayerRanges {
    /// `[hidden]` RMSNorm gain before attention.
    pub attn_norm: Range<usize>,
    /// `[heads·head_dim × hidden]` query projection.
    pub q: Range<usize>,
    /// `[heads·head_dim]`; only Qwen2 has QKV biases.
    pub q_bias: Option<Range<usize>>,
    /// `[kv_heads·head_dim × hidden]` key projection.
    pub k: Range<usize>,
    /// `[kv_heads·head_dim]`; Qwen2 only.
    pub k_bias: Option<Range<usize>>,
    /// `[kv_heads·head_dim × hidden]` value projection.
    pub v: Range<usize>,
    /// `[kv_heads·head_dim]`; Qwen2 only.
    pub v_bias: Option<Range<usize>>,
    /// `[hidden × heads·head_dim]` attention output projection.
    pub o: Range<usize>,
    /// `[head_dim]` RMSNorm gain applied to each query head; only Qwen3 has QK-norm.
    pub q_norm: Option<Range<usize>>,
    /// `[head_dim]` RMSNorm gain applied to each key head; Qwen3 and Gemma 3.
    pub k_norm: Option<Range<usize>>,
    /// `[hidden]` RMSNorm gain on the attention output before its residual add; Gemma 3 only.
    pub post_attn_norm: Option<Range<usize>>,
    /// `[hidden]` RMSNorm gain before the MLP.
    pub mlp_norm: Range<usize>,
    /// `[intermediate × hidden]` SwiGLU gate projection.
    pub gate: Range<usize>,
    /// `[intermediate × hidden]` SwiGLU up projection.
    pub up: Range<usize>,
    /// `[hidden × intermediate]` SwiGLU down projection.
    pub down: Range<usize>,
    /// `[hidden]` RMSNorm gain on the MLP output before its residual add; Gemma 3 only.
    pub post_mlp_norm: Option<Range<usize>>,
}

/// Offsets of every tensor of a model in the flat buffer, in checkpoint order: embedding, layers
/// (bottom first), final norm, then the LM head when untied.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// Every tensor, in buffer order.
    pub tensors: Vec<TensorSpec>,
    /// `[vocab × hidden]` token embedding.
    pub embed: Range<usize>,
    /// One per decoder layer, bottom first.
    pub layers: Vec<LayerRanges>,
    /// `[hidden]` RMSNorm gain after the last layer.
    pub final_norm: Range<usize>,
    /// `None` when the LM head is the (tied) embedding.
    pub lm_head: Option<Range<usize>>,
    /// Length of the flat buffer: the number of parameters.
    pub total: usize,
}

impl ParamLayout {
    /// Lays out the model `c` describes; biases, QK norms and a separate LM head appear only where the
    /// architecture and `tie_word_embeddings` call for them.
    pub fn new(c: &ModelConfig) -> Self {
        let mut b = Builder { tensors: Vec::new(), total: 0 };
        let (h, q_w, kv_w) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let embed = b.add("model.embed_tokens.weight", &[c.vocab_size, h]);
        let layers = (0..c.num_layers)
            .map(|l| {
                let p = |s: &str| format!("model.layers.{l}.{s}");
                let (bias, post) = (c.arch.qkv_bias(), c.arch.post_norms());
                // Gemma names its four norms by place; Llama's "post_attention" norm is the one
                // before the MLP.
                let mlp_norm =
                    if post { "pre_feedforward_layernorm.weight" } else { "post_attention_layernorm.weight" };
                LayerRanges {
                    attn_norm: b.add(&p("input_layernorm.weight"), &[h]),
                    q: b.add(&p("self_attn.q_proj.weight"), &[q_w, h]),
                    q_bias: bias.then(|| b.add(&p("self_attn.q_proj.bias"), &[q_w])),
                    k: b.add(&p("self_attn.k_proj.weight"), &[kv_w, h]),
                    k_bias: bias.then(|| b.add(&p("self_attn.k_proj.bias"), &[kv_w])),
                    v: b.add(&p("self_attn.v_proj.weight"), &[kv_w, h]),
                    v_bias: bias.then(|| b.add(&p("self_attn.v_proj.bias"), &[kv_w])),
                    o: b.add(&p("self_attn.o_proj.weight"), &[h, q_w]),
                    q_norm: c.arch.qk_norm().then(|| b.add(&p("self_attn.q_norm.weight"), &[c.head_dim])),
                    k_norm: c.arch.qk_norm().then(|| b.add(&p("self_attn.k_norm.weight"), &[c.head_dim])),
                    post_attn_norm: post.then(|| b.add(&p("post_attention_layernorm.weight"), &[h])),
                    mlp_norm: b.add(&p(mlp_norm), &[h]),
                    gate: b.add(&p("mlp.gate_proj.weight"), &[c.intermediate_size, h]),
                    up: b.add(&p("mlp.up_proj.weight"), &[c.intermediate_size, h]),
                    down: b.add(&p("mlp.down_proj.weight"), &[h, c.intermediate_size]),
                    post_mlp_norm: post.then(|| b.add(&p("post_feedforward_layernorm.weight"), &[h])),
                }
            })
            .collect();
        let final_norm = b.add("model.norm.weight", &[h]);
        let lm_head = (!c.tie_word_embeddings).then(|| b.add("lm_head.weight", &[c.vocab_size, h]));
        ParamLayout { tensors: b.tensors, embed, layers, final_norm, lm_head, total: b.total }
    }

    /// The tensor of that Hugging Face name, if the model has one.
    pub fn find(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The LM head's range: its own, or the embedding's when tied.
    pub fn head(&self) -> Range<usize> {
        self.lm_head.clone().unwrap_or(self.embed.clone())
    }
}

struct Builder {
    tensors: Vec<TensorSpec>,
    total: usize,
}

impl Builder {
    fn add(&mut self, name: &str, shape: &[usize]) -> Range<usize> {
        let range = self.total..self.total + shape.iter().product::<usize>();
        self.total = range.end;
        self.tensors.push(TensorSpec { name: name.into(), shape: shape.to_vec(), range: range.clone() });
        range
    }
}
