//! Loading and saving a `Transformer` as a Hugging Face model directory.

use crate::config::ModelConfig;
use crate::safetensors::{write_f32, SafeTensors};
use crate::transformer::Transformer;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Tensors a checkpoint may carry that keel does not use.
fn ignorable(name: &str, config: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (config.tie_word_embeddings && name == "lm_head.weight")
}

impl Transformer {
    /// Loads `config.json` and the safetensors weights (single file or sharded) of `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::from_file(dir)?;
        let st = SafeTensors::open(dir)?;
        // Every tensor is found and its shape checked before the weights are allocated, so
        // their size is bounded by the files'.
        let layout = crate::params::ParamLayout::new(&config);
        for spec in &layout.tensors {
            let entry = st.get(&spec.name).with_context(|| {
                format!("{}: tensor {} is missing (the config asks for it)", dir.display(), spec.name)
            })?;
            if entry.shape != spec.shape {
                bail!(
                    "{}: tensor {} has shape {:?}, but the config implies {:?}",
                    st.file_of(&spec.name).unwrap_or(dir).display(),
                    spec.name,
                    entry.shape,
                    spec.shape
                );
            }
        }
        if let Some(extra) = st.names().find(|n| layout.find(n).is_none() && !ignorable(n, &config)) {
            bail!(
                "{}: tensor {extra} is not part of a {} model with this config (wrong architecture or config?)",
                st.file_of(extra).unwrap_or(dir).display(),
                config.arch.model_type()
            );
        }
        let mut model = Transformer::zeros(config);
        for spec in &layout.tensors {
            st.read_f32(&spec.name, &mut model.params[spec.range.clone()])
                .with_context(|| format!("{}", st.file_of(&spec.name).unwrap_or(dir).display()))?;
        }
        Ok(model)
    }

    /// Writes `config.json` and `model.safetensors` (f32) into `dir`, which transformers loads.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors: Vec<(&str, &[usize], &[f32])> = self
            .layout
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice(), &self.params[t.range.clone()]))
            .collect();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_f32(&dir.join("model.safetensors"), &tensors, &meta)?;
        let config = serde_json::to_string_pretty(&self.config.to_hf_json())?;
        let path = dir.join("config.json");
        std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))
    }
}
