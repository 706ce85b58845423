//! Shared by the integration tests: where the default model is.

use std::path::PathBuf;

/// SmolLM2-135M-Instruct's GGUF, fetched by scripts/fetch-model.sh (which .ci/run calls first).
pub fn default_model_path() -> PathBuf {
    let path = keel_data::pretrained::default_model_path(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    assert!(path.exists(), "{} is missing: run scripts/fetch-model.sh first", path.display());
    path
}
