//! Writing GGUF (version 3) for llama.cpp and Ollama: typed metadata, the model's tensors under
//! llama.cpp's names and layouts (Q/K rows permuted back for Llama), stored as f32, f16 or
//! Q8_0. The reader in `gguf.rs` is the round trip's other half.

use crate::config::Arch;
use crate::gguf::{reorder_qk_rows, GgmlType};
use crate::transformer::Transformer;
use anyhow::{bail, ensure, Context, Result};
use half::f16;
use std::io::Write;
use std::path::Path;

/// A metadata value with the exact GGUF type llama.cpp expects for its key (its loader checks
/// types: a block count must be a uint32, token scores float32).
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// uint32 (type 4).
    U32(u32),
    /// int32 (type 5).
    I32(i32),
    /// float32 (type 6).
    F32(f32),
    /// bool (type 7).
    Bool(bool),
    /// string (type 8).
    Str(String),
    /// array of strings.
    Strings(Vec<String>),
    /// array of float32.
    F32s(Vec<f32>),
    /// array of int32.
    I32s(Vec<i32>),
}

/// Storage types keel writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// Exact.
    F32,
    /// Half precision for matrices; norms stay f32.
    F16,
    /// 8-bit blocks of 32 with an f16 scale for matrices; norms stay f32.
    Q8_0,
}

impl ExportType {
    /// `general.file_type` (llama.cpp's LLAMA_FTYPE: all f32, mostly f16, mostly Q8_0).
    fn file_type(self) -> u32 {
        match self {
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q8_0 => 7,
        }
    }
}

/// One tensor to write: llama.cpp's name, its shape rows first, and its encoded bytes.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    kind: GgmlType,
    bytes: Vec<u8>,
}

/// A GGUF file being assembled.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<Tensor>,
}

const ALIGNMENT: usize = 32;

impl GgufWriter {
    /// Adds (or replaces) a metadata entry.
    pub fn set(&mut self, key: &str, value: GgufValue) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
    }

    /// Adds an f32 tensor (shape rows first), encoded as `kind`.
    pub fn add_tensor(&mut self, name: &str, shape: &[usize], values: &[f32], kind: GgmlType) -> Result<()> {
        ensure!(
            shape.iter().product::<usize>() == values.len(),
            "tensor {name}: shape {shape:?} ≠ {} values",
            values.len()
        );
        let bytes = match kind {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            GgmlType::Q8_0 => {
                let cols = *shape.last().unwrap_or(&0);
                ensure!(
                    cols.is_multiple_of(32),
                    "tensor {name}: rows of {cols} values do not split into Q8_0 blocks of 32"
                );
                quantize_q8_0(values)
            }
            other => bail!("tensor {name}: keel does not write {other:?}"),
        };
        self.tensors.push(Tensor { name: name.to_string(), shape: shape.to_vec(), kind, bytes });
        Ok(())
    }

    /// Writes the file (into a temporary name, then renamed: a failure leaves no partial file).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("gguf.partial");
        let result = self.write_to(&tmp).and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_to(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            put_value(&mut header, value);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                header.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            header.extend_from_slice(&type_id(t.kind).to_le_bytes());
            header.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.bytes.len()).next_multiple_of(ALIGNMENT);
        }
        header.resize(header.len().next_multiple_of(ALIGNMENT), 0);
        let io = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
        w.write_all(&header).map_err(io)?;
        for t in &self.tensors {
            w.write_all(&t.bytes).map_err(io)?;
            let pad = t.bytes.len().next_multiple_of(ALIGNMENT) - t.bytes.len();
            w.write_all(&[0u8; ALIGNMENT][..pad]).map_err(io)?;
        }
        w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
    }
}

fn type_id(kind: GgmlType) -> u32 {
    match kind {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 8,
        _ => unreachable!("add_tensor accepts only f32, f16 and q8_0"),
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    let array = |out: &mut Vec<u8>, inner: u32, n: usize| {
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&inner.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
    };
    match v {
        GgufValue::U32(x) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        GgufValue::I32(x) => {
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        GgufValue::F32(x) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        GgufValue::Bool(b) => {
            out.extend_from_slice(&7u32.to_le_bytes());
            out.push(*b as u8);
        }
        GgufValue::Str(s) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            put_string(out, s);
        }
        GgufValue::Strings(list) => {
            array(out, 8, list.len());
            list.iter().for_each(|s| put_string(out, s));
        }
        GgufValue::F32s(list) => {
            array(out, 6, list.len());
            list.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        GgufValue::I32s(list) => {
            array(out, 5, list.len());
            list.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
}

/// Q8_0: blocks of 32 values as an f16 scale d = max|x| / 127 and 32 signed bytes round(x / d),
/// as llama.cpp's reference quantizer computes them.
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks(32) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * inv).round() as i8 as u8));
    }
    out
}

/// The architecture's name in GGUF, and whether llama.cpp permutes its Q/K rows.
fn gguf_arch(arch: Arch) -> (&'static str, bool) {
    match arch {
        Arch::Llama | Arch::Mistral => ("llama", true),
        Arch::Qwen2 => ("qwen2", false),
        Arch::Qwen3 => ("qwen3", false),
        Arch::Gemma3 => ("gemma3", false),
    }
}

/// Refuses a Gemma 3 model that llama.cpp would compute differently from what keel trained:
/// llama.cpp assumes its layer pattern, local RoPE base and attention scale (`GEMMA3_GGUF`).
fn check_gemma3_conventions(c: &crate::config::ModelConfig) -> Result<()> {
    let g = &crate::gguf::GEMMA3_GGUF;
    ensure!(
        c.layer_kinds == g.layer_kinds(c.num_layers),
        "llama.cpp assumes every {}th Gemma 3 layer is global; this model's layer_types differ, so a GGUF of it would run wrongly",
        g.global_every
    );
    ensure!(
        c.rope_local_theta == Some(g.local_rope_theta),
        "llama.cpp assumes a local RoPE base of {} for Gemma 3; this model has {:?}",
        g.local_rope_theta,
        c.rope_local_theta
    );
    let scalar = g.attn_scalar(c.hidden_size, c.num_heads, c.head_dim);
    ensure!(
        c.query_pre_attn_scalar == Some(scalar),
        "llama.cpp assumes query_pre_attn_scalar {scalar} for this Gemma 3 size; this model has {:?}",
        c.query_pre_attn_scalar
    );
    Ok(())
}

impl Transformer {
    /// Adds the model's configuration (`general.*`, `{arch}.*`) and weights to `w`, matrices
    /// stored as `kind`, norms and biases in f32.
    pub fn add_to_gguf(&self, w: &mut GgufWriter, kind: ExportType, name: &str) -> Result<()> {
        let c = &self.config;
        ensure!(
            c.rope_scaling.is_none(),
            "this model uses Llama 3 RoPE scaling, which keel cannot write to GGUF yet (llama.cpp needs a rope_freqs tensor)"
        );
        ensure!(self.lora.is_none(), "merge the LoRA adapter into the weights before exporting");
        let (arch, permuted) = gguf_arch(c.arch);
        let u32_of =
            |x: usize, what: &str| u32::try_from(x).with_context(|| format!("{what} {x} does not fit GGUF's uint32"));
        w.set("general.architecture", GgufValue::Str(arch.into()));
        w.set("general.name", GgufValue::Str(name.into()));
        w.set("general.file_type", GgufValue::U32(kind.file_type()));
        for (key, value) in [
            ("context_length", c.max_position_embeddings),
            ("embedding_length", c.hidden_size),
            ("block_count", c.num_layers),
            ("feed_forward_length", c.intermediate_size),
            ("attention.head_count", c.num_heads),
            ("attention.head_count_kv", c.num_kv_heads),
            ("attention.key_length", c.head_dim),
            ("attention.value_length", c.head_dim),
            ("rope.dimension_count", c.head_dim),
            ("vocab_size", c.vocab_size),
        ] {
            w.set(&format!("{arch}.{key}"), GgufValue::U32(u32_of(value, key)?));
        }
        w.set(&format!("{arch}.attention.layer_norm_rms_epsilon"), GgufValue::F32(c.rms_norm_eps as f32));
        w.set(&format!("{arch}.rope.freq_base"), GgufValue::F32(c.rope_theta as f32));
        if c.arch == Arch::Gemma3 {
            check_gemma3_conventions(c)?;
            let window = c.sliding_window.context("a Gemma 3 model without a sliding window")?;
            w.set(&format!("{arch}.attention.sliding_window"), GgufValue::U32(u32_of(window, "sliding_window")?));
        }
        let layout = crate::params::ParamLayout::new(c);
        let norm_offset = c.arch.norm_offset();
        for spec in &layout.tensors {
            let gguf = crate::gguf::gguf_name(c.arch, &spec.name)
                .with_context(|| format!("no GGUF name for {}", spec.name))?;
            let mut values = self.params[spec.range.clone()].to_vec();
            if norm_offset != 0.0 && spec.name.ends_with("norm.weight") {
                // llama.cpp reads Gemma's gain 1 + w as stored.
                values.iter_mut().for_each(|x| *x += norm_offset);
            }
            if permuted && gguf.ends_with("attn_q.weight") {
                values = reorder_qk_rows(&values, c.num_heads, c.hidden_size, true);
            } else if permuted && gguf.ends_with("attn_k.weight") {
                values = reorder_qk_rows(&values, c.num_kv_heads, c.hidden_size, true);
            }
            let matrix = spec.shape.len() == 2;
            let stored = match kind {
                _ if !matrix => GgmlType::F32,
                ExportType::F32 => GgmlType::F32,
                ExportType::F16 => GgmlType::F16,
                ExportType::Q8_0 => GgmlType::Q8_0,
            };
            w.add_tensor(&gguf, &spec.shape, &values, stored)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordering_qk_rows_for_gguf_is_undone_by_loading() {
        let (heads, d, cols) = (3, 4, 5);
        let w: Vec<f32> = (0..heads * d * cols).map(|x| x as f32).collect();
        let there = reorder_qk_rows(&w, heads, cols, true);
        assert_ne!(there, w);
        assert_eq!(reorder_qk_rows(&there, heads, cols, false), w);
    }

    #[test]
    fn a_gemma3_that_llama_cpp_would_run_differently_is_refused() {
        let base = serde_json::json!({"model_type": "gemma3_text", "hidden_size": 32, "num_hidden_layers": 6,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 48,
            "vocab_size": 64, "sliding_window": 8, "query_pre_attn_scalar": 16});
        let export = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            edit(&mut v);
            let model = Transformer::zeros(crate::config::ModelConfig::from_hf_json(&v).unwrap());
            model.add_to_gguf(&mut GgufWriter::default(), ExportType::F32, "t").map_err(|e| format!("{e:#}"))
        };
        assert!(export(&|_| {}).is_ok(), "Gemma's own pattern, base and scale export");
        let layers = |v: &mut serde_json::Value| v["layer_types"] = serde_json::json!(vec!["full_attention"; 6]);
        assert!(export(&layers).unwrap_err().contains("every 6th"));
        let scale = |v: &mut serde_json::Value| v["query_pre_attn_scalar"] = serde_json::json!(20);
        assert!(export(&scale).unwrap_err().contains("query_pre_attn_scalar"));
        let rope = |v: &mut serde_json::Value| v["rope_local_base_freq"] = serde_json::json!(20000.0);
        assert!(export(&rope).unwrap_err().contains("local RoPE base"));
    }

    #[test]
    fn q8_0_blocks_dequantize_within_half_a_step() {
        let values: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 31.5) / 7.0).collect();
        let bytes = quantize_q8_0(&values);
        assert_eq!(bytes.len(), 2 * 34);
        let mut back = vec![0.0; 64];
        crate::gguf::dequantize(GgmlType::Q8_0, &bytes, &mut back);
        for (block, got) in values.chunks(32).zip(back.chunks(32)) {
            let step = block.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
            for (a, b) in block.iter().zip(got) {
                assert!((a - b).abs() <= 0.5 * step * 1.01, "{a} → {b}");
            }
        }
        assert!(quantize_q8_0(&[0.0; 32]).iter().skip(2).all(|&b| b == 0), "an all-zero block stays zero");
    }
}
