//! Entry points of the fuzz targets in `fuzz/`, also called by the corpus replay tests, so that
//! CI checks every input the fuzzers kept (and every crash they found) without a fuzzer. Each
//! takes arbitrary bytes and must return without panicking, hanging or allocating beyond the
//! input's size; errors are the expected outcome and are dropped.

use crate::config::ModelConfig;
use crate::gguf::{config_from_gguf, GgufFile};
use crate::safetensors::SafeTensors;
use crate::transformer::Transformer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f` on a fresh file holding `data` (readers that take a path are fuzzed through it).
pub fn with_temp_file<T>(name: &str, data: &[u8], f: impl FnOnce(&Path) -> T) -> T {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("keel-fuzz-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, data).expect("the temporary directory is writable");
    let out = f(&path);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// A GGUF file: header, metadata, tensor directory, the config it implies, and the model.
pub fn gguf(data: &[u8]) {
    let Ok(g) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) else { return };
    if config_from_gguf(&g).is_ok() {
        let _ = Transformer::from_gguf(&g);
    }
    for t in &g.tensors {
        let _ = g.dequantize(t);
    }
}

/// A safetensors file (every tensor read), or with a first byte of 0 a `config.json`.
pub fn safetensors(data: &[u8]) {
    match data.split_first() {
        Some((0, json)) => {
            if let Ok(v) = serde_json::from_slice(json) {
                let _ = ModelConfig::from_hf_json(&v);
            }
        }
        _ => with_temp_file("model.safetensors", data, |path| {
            let Ok(st) = SafeTensors::open(path) else { return };
            let names: Vec<String> = st.names().map(String::from).collect();
            for name in names {
                let _ = st.to_vec_f32(&name);
                let _ = st.read_i64(&name);
            }
        }),
    }
}
