//! The GGUF reader and every dequantizer against the `gguf` Python package
//! (fixtures from tools/make_gguf_fixtures.py).

use keel_model::gguf::{GgufFile, MetaValue};
use keel_model::safetensors::SafeTensors;
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

/// Compares a metadata value with its JSON description.
fn same(v: &MetaValue, want: &Value) -> bool {
    match (v, want) {
        (MetaValue::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (MetaValue::Str(s), Value::String(t)) => s == t,
        (MetaValue::Bool(x), Value::Bool(y)) => x == y,
        (MetaValue::U64(x), Value::Number(n)) => n.as_u64() == Some(*x),
        (MetaValue::I64(x), Value::Number(n)) => n.as_i64() == Some(*x),
        (MetaValue::F64(x), Value::Number(n)) => n.as_f64() == Some(*x),
        _ => false,
    }
}

#[test]
fn metadata_of_every_type_reads_back() {
    let g = GgufFile::open(&fixtures().join("quants.gguf")).unwrap();
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(g.version as u64, want["gguf_version"].as_u64().unwrap());
    for entry in want["metadata"].as_array().unwrap() {
        let key = entry["key"].as_str().unwrap();
        let got = g.meta(key).unwrap_or_else(|| panic!("metadata key {key} missing"));
        assert!(same(got, &entry["value"]), "{key}: {got:?} vs {}", entry["value"]);
    }
}

#[test]
fn every_quantization_type_dequantizes_like_the_reference() {
    let g = GgufFile::open(&fixtures().join("quants.gguf")).unwrap();
    let reference = SafeTensors::open(&fixtures().join("quants_reference.safetensors")).unwrap();
    let mut checked = Vec::new();
    for t in &g.tensors {
        let ours = g.dequantize(t);
        let want = reference.to_vec_f32(&t.name).unwrap();
        assert_eq!(t.shape, reference.get(&t.name).unwrap().shape, "{}: shape", t.name);
        let worst = ours.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / b.abs().max(1.0)));
        assert!(worst <= 1e-6, "{} ({:?}): differs from gguf's dequantize by {worst:e}", t.name, t.kind);
        checked.push(format!("{:?}", t.kind));
    }
    checked.sort();
    assert_eq!(checked, ["BF16", "F16", "F32", "Q4K", "Q4_0", "Q4_1", "Q5K", "Q5_0", "Q5_1", "Q6K", "Q8_0"]);
}

#[test]
fn version_2_files_read_the_same() {
    let mut bytes = std::fs::read(fixtures().join("quants.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("quants_v2.gguf");
    std::fs::write(&path, bytes).unwrap();
    let (v2, v3) = (GgufFile::open(&path).unwrap(), GgufFile::open(&fixtures().join("quants.gguf")).unwrap());
    assert_eq!(v2.version, 2);
    for (a, b) in v2.tensors.iter().zip(&v3.tensors) {
        assert_eq!(v2.dequantize(a), v3.dequantize(b));
    }
}
