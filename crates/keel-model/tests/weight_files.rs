//! Weight files: sharded and half-precision loading, and clear errors for bad input.

use keel_model::safetensors::{write_f32, SafeTensors};
use keel_model::Transformer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/qwen2_bias_tied")
}

/// A scratch copy of the fixture model's directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weight_files").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match Transformer::load(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
}

/// Rewrites the model file through `edit`, which receives every (name, shape, data).
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let st = SafeTensors::open(&dir.join("model.safetensors")).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        st.names().map(|n| (n.to_string(), st.get(n).unwrap().shape.clone(), st.to_vec_f32(n).unwrap())).collect();
    drop(st);
    edit(&mut tensors);
    let refs: Vec<(&str, &[usize], &[f32])> =
        tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    write_f32(&dir.join("model.safetensors"), &refs, &HashMap::new()).unwrap();
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dir = scratch("sharded");
    let single = Transformer::load(&dir).unwrap();
    let st = SafeTensors::open(&dir.join("model.safetensors")).unwrap();
    let names: Vec<String> = st.names().map(String::from).collect();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", shard + 1);
        let data: Vec<(String, Vec<usize>, Vec<f32>)> =
            part.iter().map(|n| (n.clone(), st.get(n).unwrap().shape.clone(), st.to_vec_f32(n).unwrap())).collect();
        let refs: Vec<(&str, &[usize], &[f32])> =
            data.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
        write_f32(&dir.join(&file), &refs, &HashMap::new()).unwrap();
        part.iter().for_each(|n| {
            weight_map.insert(n.clone(), file.clone().into());
        });
    }
    drop(st);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Transformer::load(&dir).unwrap();
    assert!(sharded.params == single.params);

    // An index that points at a shard that is not there.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert_mentions(&load_err(&dir), &["model-00002-of-00002.safetensors", "does not exist"]);
}

#[test]
fn f16_and_bf16_tensors_widen_to_f32() {
    let values = [1.5f32, -2.25, 0.0, 65504.0];
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weight_files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("half.safetensors");
    let header = r#"{"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    values.iter().for_each(|&v| bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()));
    values.iter().for_each(|&v| bytes.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()));
    std::fs::write(&path, bytes).unwrap();
    let st = SafeTensors::open(&path).unwrap();
    assert_eq!(st.to_vec_f32("a").unwrap(), values);
    assert_eq!(st.to_vec_f32("b").unwrap(), [1.5, -2.25, 0.0, 65536.0]); // bf16 rounds 65504
}

#[test]
fn a_directory_without_weights_is_refused() {
    let dir = scratch("no_weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_mentions(&load_err(&dir), &["neither model.safetensors nor model.safetensors.index.json"]);
}

#[test]
fn truncated_and_foreign_files_are_refused_with_their_name() {
    let dir = scratch("truncated");
    let file = dir.join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 2).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "truncated"]);

    std::fs::write(&file, b"this is not a safetensors file at all").unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "not a valid safetensors file"]);
    std::fs::write(&file, b"abc").unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "shorter than the 8-byte header"]);
}

#[test]
fn wrong_shapes_and_names_are_refused_naming_the_tensor() {
    let dir = scratch("wrong_shape");
    rewrite(&dir, |t| {
        let e = t.iter_mut().find(|(n, _, _)| n == "model.layers.1.mlp.up_proj.weight").unwrap();
        e.1 = vec![e.1[1], e.1[0]];
    });
    assert_mentions(&load_err(&dir), &["model.layers.1.mlp.up_proj.weight", "shape [64, 96]", "[96, 64]"]);

    let dir = scratch("renamed");
    rewrite(&dir, |t| {
        let e = t.iter_mut().find(|(n, _, _)| n == "model.layers.0.self_attn.k_proj.bias").unwrap();
        e.0 = "model.layers.0.self_attn.k_proj.bias_".into();
    });
    assert_mentions(&load_err(&dir), &["model.layers.0.self_attn.k_proj.bias", "missing"]);

    let dir = scratch("extra");
    rewrite(&dir, |t| t.push(("model.layers.0.self_attn.o_proj.bias".into(), vec![64], vec![0.0; 64])));
    assert_mentions(&load_err(&dir), &["model.layers.0.self_attn.o_proj.bias", "not part of a qwen2 model"]);
}

#[test]
fn inconsistent_configs_are_refused_naming_the_file() {
    let dir = scratch("bad_config");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["num_key_value_heads"] = 0.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_mentions(&load_err(&dir), &["config.json", "num_key_value_heads (0) must be positive"]);

    config["num_key_value_heads"] = 2.into();
    config["intermediate_size"] = 95.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    assert_mentions(&load_err(&dir), &["model.layers.0.mlp.gate_proj.weight", "[96, 64]", "[95, 64]"]);

    std::fs::write(dir.join("config.json"), "{\"model_type\": ").unwrap();
    assert_mentions(&load_err(&dir), &["config.json", "not valid JSON"]);
}
