//! Shared by the integration tests: where the default model is.

use std::path::PathBuf;

/// SmolLM2-135M-Instruct's GGUF, fetched by scripts/fetch-model.sh (which .ci/run calls first).
pub fn default_model_path() -> PathBuf {
    let dir = std::env::var_os("KEEL_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}
