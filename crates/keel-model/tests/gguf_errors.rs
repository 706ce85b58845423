//! Bad GGUF input: clear errors naming what and where, never a panic.

use keel_model::gguf::GgufFile;
use keel_model::Transformer;
use std::path::PathBuf;

/// Writes a minimal GGUF: string metadata, then tensors given as (name, dims in GGUF order,
/// ggml type id, raw bytes).
fn gguf_bytes(version: u32, meta: &[(&str, &str)], tensors: &[(&str, Vec<u64>, u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((meta.len() as u64).to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    for (k, v) in meta {
        string(&mut b, k);
        b.extend(8u32.to_le_bytes());
        string(&mut b, v);
    }
    let mut offset = 0u64;
    for (name, dims, kind, data) in tensors {
        string(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(kind.to_le_bytes());
        b.extend(offset.to_le_bytes());
        offset += (data.len() as u64).next_multiple_of(32);
    }
    b.resize(b.len().next_multiple_of(32), 0);
    for (_, _, _, data) in tensors {
        b.extend(data);
        b.resize(b.len().next_multiple_of(32), 0);
    }
    b
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gguf_errors");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open_err(name: &str, bytes: &[u8]) -> String {
    match GgufFile::open(&write(name, bytes)) {
        Ok(_) => panic!("{name} opened although it is broken"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
}

#[test]
fn a_well_formed_file_reads_back() {
    let data: Vec<u8> = [1.0f32, -2.0, 0.5, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let path = write("ok.gguf", &gguf_bytes(2, &[("general.architecture", "llama")], &[("w", vec![2, 2], 0, data)]));
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(g.meta("general.architecture").unwrap().as_str(), Some("llama"));
    let t = g.tensor("w").unwrap();
    assert_eq!(t.shape, vec![2, 2]);
    assert_eq!(g.dequantize(t), vec![1.0, -2.0, 0.5, 4.0]);
}

#[test]
fn foreign_truncated_and_unversioned_files_are_refused() {
    assert_mentions(&open_err("text.gguf", b"hello world, not a model"), &["text.gguf", "not a GGUF file"]);
    assert_mentions(&open_err("empty.gguf", b""), &["empty.gguf", "not a GGUF file"]);
    assert_mentions(&open_err("v1.gguf", &gguf_bytes(1, &[], &[])), &["v1.gguf", "version 1"]);
    let data: Vec<u8> = vec![0; 64];
    let full = gguf_bytes(3, &[("general.architecture", "llama")], &[("w", vec![16], 0, data)]);
    assert_mentions(&open_err("cut_data.gguf", &full[..full.len() - 40]), &["cut_data.gguf", "tensor w", "truncated"]);
    assert_mentions(&open_err("cut_header.gguf", &full[..30]), &["cut_header.gguf", "truncated"]);
}

#[test]
fn an_unknown_quantization_type_names_the_tensor() {
    let bytes = gguf_bytes(3, &[], &[("blk.0.ffn_up.weight", vec![256], 10, vec![0; 84])]);
    assert_mentions(&open_err("q2k.gguf", &bytes), &["blk.0.ffn_up.weight", "ggml type 10", "Q4_K"]);
}

#[test]
fn an_unsupported_architecture_is_refused() {
    let bytes = gguf_bytes(3, &[("general.architecture", "mamba")], &[]);
    let path = write("mamba.gguf", &bytes);
    let err = format!("{:#}", Transformer::load_gguf(&path).err().expect("mamba must be refused"));
    assert_mentions(&err, &["mamba.gguf", "\"mamba\" is not supported"]);
}

/// Gemma 3's vision parts: a projector file (llama.cpp's mmproj) or vision tensors in the model.
#[test]
fn a_multimodal_gguf_is_refused() {
    let path = write("mmproj.gguf", &gguf_bytes(3, &[("general.architecture", "clip")], &[]));
    let err = format!("{:#}", Transformer::load_gguf(&path).err().expect("an mmproj file must be refused"));
    assert_mentions(&err, &["mmproj.gguf", "vision projector", "text model's GGUF"]);
    let tensor = ("v.blk.0.attn_q.weight", vec![4], 0, vec![0; 16]);
    let path = write("vision.gguf", &gguf_bytes(3, &[("general.architecture", "gemma3")], &[tensor]));
    let err = format!("{:#}", Transformer::load_gguf(&path).err().expect("vision tensors must be refused"));
    assert_mentions(&err, &["vision.gguf", "v.blk.0.attn_q.weight", "vision tower"]);
}
