//! Crafted model files (issue 12, defect 6): sizes and offsets that wrap, overlap or exceed
//! the file or the machine's memory are refused, naming the tensor or key, before anything
//! large is allocated; none panics or aborts.

use keel_model::gguf::{config_from_gguf, GgufFile};
use keel_model::lora::{LoraAdapter, LoraConfig, Module};
use keel_model::safetensors::SafeTensors;
use keel_model::{ModelConfig, Transformer};
use std::path::{Path, PathBuf};

enum Meta {
    Str(&'static str),
    U64(u64),
    F32(f32),
}

/// A tensor-directory entry: name, dims in GGUF order, ggml type, offset in the data section.
type Entry = (&'static str, Vec<u64>, u32, u64);

/// A GGUF v3 file with `meta`, the directory `tensors`, and `data` after the aligned header.
fn gguf(meta: &[(&str, Meta)], tensors: &[Entry], data: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((meta.len() as u64).to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    for (k, v) in meta {
        string(&mut b, k);
        match v {
            Meta::Str(s) => {
                b.extend(8u32.to_le_bytes());
                string(&mut b, s);
            }
            Meta::U64(x) => {
                b.extend(10u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Meta::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
        }
    }
    for (name, dims, kind, offset) in tensors {
        string(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(kind.to_le_bytes());
        b.extend(offset.to_le_bytes());
    }
    b.resize(b.len().next_multiple_of(32), 0);
    b.extend(data);
    b
}

/// The metadata of a small llama, with `edit` applied.
fn llama_meta(edit: &[(&'static str, u64)]) -> Vec<(&'static str, Meta)> {
    let mut meta = vec![
        ("general.architecture", Meta::Str("llama")),
        ("llama.embedding_length", Meta::U64(8)),
        ("llama.attention.head_count", Meta::U64(2)),
        ("llama.block_count", Meta::U64(1)),
        ("llama.feed_forward_length", Meta::U64(16)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
    ];
    for (key, value) in edit {
        meta.retain(|(k, _)| k != key);
        meta.push((key, Meta::U64(*value)));
    }
    meta
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crafted_files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("a crafted file was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
}

#[test]
fn a_tensor_offset_that_wraps_is_refused() {
    let bytes = gguf(&[], &[("w", vec![4], 0, u64::MAX - 7)], &[0; 32]);
    let err = err_of(GgufFile::open(&write("wrap.gguf", &bytes)));
    assert_mentions(&err, &["wrap.gguf", "tensor w", "beyond the end"]);
}

#[test]
fn dims_whose_product_wraps_and_a_0_dim_embedding_are_refused() {
    let bytes = gguf(&[], &[("w", vec![1 << 32, 1 << 32, 16], 0, 0)], &[0; 32]);
    assert_mentions(&err_of(GgufFile::open(&write("dims.gguf", &bytes))), &["tensor w", "more elements"]);
    let scalar = gguf(&llama_meta(&[]), &[("token_embd.weight", vec![], 0, 0)], &[0; 32]);
    let g = GgufFile::open(&write("scalar_embd.gguf", &scalar)).unwrap();
    assert_mentions(&err_of(config_from_gguf(&g)), &["token_embd.weight", "shape []"]);
    let empty = gguf(&llama_meta(&[]), &[("token_embd.weight", vec![8, 0], 0, 0)], &[0; 32]);
    let g = GgufFile::open(&write("empty_embd.gguf", &empty)).unwrap();
    assert_mentions(&err_of(config_from_gguf(&g)), &["vocab_size must be positive"]);
}

#[test]
fn huge_block_count_or_embedding_length_is_refused_before_allocating() {
    let embd = ("token_embd.weight", vec![8, 4], 0, 0);
    let bytes = gguf(&llama_meta(&[("llama.block_count", 4_000_000_000)]), std::slice::from_ref(&embd), &[0; 128]);
    let err = err_of(Transformer::load_gguf(&write("blocks.gguf", &bytes)));
    assert_mentions(&err, &["blocks.gguf", "num_hidden_layers 4000000000", "more than this machine's"]);
    let wide = 9u64 << 40;
    let meta = llama_meta(&[("llama.embedding_length", wide)]);
    let bytes = gguf(&meta, &[embd], &[0; 128]);
    assert_mentions(
        &err_of(Transformer::load_gguf(&write("wide.gguf", &bytes))),
        &["token_embd.weight", "9895604649984"],
    );
    let bytes = gguf(&meta, &[("token_embd.weight", vec![wide, 4], 0, 0)], &[0; 128]);
    assert_mentions(
        &err_of(Transformer::load_gguf(&write("wide2.gguf", &bytes))),
        &["token_embd.weight", "beyond the end"],
    );
}

#[test]
fn overlapping_gguf_tensors_are_refused() {
    let bytes = gguf(&[], &[("a", vec![8], 0, 0), ("b", vec![8], 0, 16)], &[0; 64]);
    assert_mentions(&err_of(GgufFile::open(&write("alias.gguf", &bytes))), &["tensors a and b overlap"]);
}

fn safetensors_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    b.extend(vec![0u8; data_len]);
    b
}

#[test]
fn safetensors_offsets_that_alias_or_wrap_are_refused() {
    let alias = r#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#;
    let err = err_of(SafeTensors::open(&write("alias.safetensors", &safetensors_file(alias, 16))));
    assert_mentions(&err, &["alias.safetensors", "tensors a and b share bytes"]);
    let wrap = r#"{"a": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}}"#;
    let err = err_of(SafeTensors::open(&write("wrap.safetensors", &safetensors_file(wrap, 16))));
    assert_mentions(&err, &["tensor a", "more elements"]);
}

#[test]
fn a_config_with_1e12_layers_is_refused_before_allocating() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crafted_files/layers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1000000000000, "num_attention_heads": 4,
            "intermediate_size": 128, "vocab_size": 100}"#,
    )
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors_file("{}", 0)).unwrap();
    let err = err_of(Transformer::load(Path::new(&dir)));
    assert_mentions(&err, &["config.json", "num_hidden_layers 1000000000000", "more than this machine's"]);
}

#[test]
fn a_lora_rank_of_1e12_is_refused_before_allocating() {
    let model = ModelConfig::from_hf_json(&serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}))
    .unwrap();
    let config = LoraConfig { rank: 1_000_000_000_000, alpha: 16.0, dropout: 0.0, targets: vec![Module::ALL[0]] };
    let err = err_of(LoraAdapter::new(&model, config, 0));
    assert_mentions(&err, &["LoRA adapter of rank 1000000000000", "more than this machine's"]);
}
