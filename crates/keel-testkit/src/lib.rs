//! Helpers shared by keel's tests: the default model (fetched by scripts/fetch-model.sh, which
//! .ci/run calls first), and a tiny randomly initialised Llama with SmolLM2's real tokenizer and
//! chat template over a small chat dataset, fast enough for whole training runs in tests; a local
//! HTTP server ([`http`]) and a fake Hugging Face Hub on it ([`hub`]).

#![warn(missing_docs)]

pub mod http;
pub mod hub;

use keel_infer::pretrained::Pretrained;
use keel_model::{ModelConfig, Transformer};
use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The data sets' offline copy the tests read: `$KEEL_SHARED_DATA`, else `../shared/data` beside
/// the repository; panics with where it looked when it is missing.
pub fn shared_data() -> PathBuf {
    let dir =
        std::env::var_os("KEEL_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/data"));
    assert!(
        dir.join("gsm8k").is_dir(),
        "{} has no data sets: the tests read the offline copy beside the repository (../shared/data); \
         clone keel next to it, or point KEEL_SHARED_DATA at it",
        dir.display()
    );
    dir
}

/// SmolLM2-135M-Instruct's GGUF; panics with what to run when it is missing.
pub fn default_model_path() -> PathBuf {
    let path = keel_infer::pretrained::default_model_path(&repo_root());
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}

/// Gemma-3-270M's GGUF (`scripts/fetch-model.sh gemma3-270m`, which scripts/setup.sh runs);
/// panics with what to run when it is missing.
pub fn gemma3_model_path() -> PathBuf {
    let dir = std::env::var_os("KEEL_MODELS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"));
    let path = dir.join("gemma-3-270m.Q4_K_M.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh gemma3-270m first", path.display());
    path
}

/// Writes the tiny model (once, under `shared`) and a dataset of `n` arithmetic conversations
/// (into `data_dir`, so that tests running in parallel never share it); returns (model dir,
/// data file).
pub fn tiny_setup(shared: &Path, data_dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let model_dir = shared.join("tiny-model");
    let guard = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    if !model_dir.join("model.safetensors").exists() {
        let mut pre = Pretrained::load(&default_model_path()).unwrap();
        let config = ModelConfig::from_hf_json(&serde_json::json!({"model_type": "llama", "hidden_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
            "vocab_size": 49152, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
            "max_position_embeddings": 2048, "eos_token_id": 2}))
        .unwrap();
        pre.model = Transformer::init_random(config, 11, 0.05);
        pre.save_hf(&model_dir).unwrap();
    }
    drop(guard);
    (model_dir, tiny_data(data_dir, n))
}

/// Writes `n` arithmetic conversations (prompt, completion) to `data_dir/data.jsonl`.
pub fn tiny_data(data_dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(data_dir).unwrap();
    let data = data_dir.join("data.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (a, b) = (i * 7 % 13 + 2, i * 5 % 11 + 3);
            serde_json::json!({"prompt": format!("What is {a} plus {b}?"), "completion": format!("{a} plus {b} is {}.", a + b)}).to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    data
}

/// A tiny randomly initialised Gemma 3 (Gemma's pattern: five sliding layers with an 8-token
/// window, then a global one) with Gemma-3-270M's real tokenizer and keel's `gemma` chat format, written once under
/// `shared`; returns its directory.
pub fn tiny_gemma3(shared: &Path) -> PathBuf {
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = shared.join("tiny-gemma3");
    let _guard = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("model.safetensors").exists() {
        let mut pre = Pretrained::load(&gemma3_model_path()).unwrap();
        let config = ModelConfig::from_hf_json(&serde_json::json!({"model_type": "gemma3_text", "hidden_size": 32,
            "num_hidden_layers": 6, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
            "intermediate_size": 48, "vocab_size": 262144, "query_pre_attn_scalar": 16, "sliding_window": 8,
            "max_position_embeddings": 512, "bos_token_id": 2, "eos_token_id": 1}))
        .unwrap();
        pre.model = Transformer::init_random(config, 13, 0.05);
        pre.save_hf(&dir).unwrap();
    }
    dir
}

/// A run config for the tiny setup.
pub fn tiny_config(model: &Path, data: &Path, out: &Path, extra: &str) -> String {
    format!(
        "[model]\npath = {:?}\n[data]\npath = {:?}\nformat = \"prompt_completion\"\nmax_seq_len = 128\n\
         [train]\nlr = 3e-3\nschedule = \"constant\"\nmicro_batch_size = 4\nthreads = 2\nseed = 3\nmax_steps = 6\n{extra}\n\
         [output]\ndir = {:?}\nsave_every = 2\nkeep_last = 2\n",
        model, data, out
    )
}

/// Runs `entry` on every file of `fuzz/corpus/<target>` (the minimized corpus, with every input
/// that once crashed), as the fuzz target does; a panic names the file. CI thus checks every
/// fixed crash without a fuzzer (RELIABILITY.md).
pub fn replay_fuzz_corpus(target: &str, entry: fn(&[u8])) {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            panic!("the fuzz input {} panics", file.display());
        }
    }
}
