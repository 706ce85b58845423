//! Checkpoints: weights (Hugging Face layout, loadable by transformers; or the LoRA adapter in
//! PEFT's layout), AdamW moments and the
//! position of the run, written atomically (temporary directory, fsync, rename) so that a crash
//! or a full disk leaves the previous checkpoint intact.

use anyhow::{bail, ensure, Context, Result};
use keel_model::lora::LoraAdapter;
use keel_model::optim::AdamW;
use keel_model::safetensors::{write_f32, SafeTensors};
use keel_model::Transformer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a run stands; saved beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Non-padding tokens forwarded so far, over all steps.
    pub tokens_seen: u64,
    /// Fingerprints of the resolved config (output section excluded) and of the tokenized
    /// data: a checkpoint only resumes the run that made it.
    pub config_fingerprint: String,
    /// See `config_fingerprint`: FNV-1a of the tokenized examples and their supervision masks.
    pub data_fingerprint: String,
    /// The keel release that wrote the checkpoint (informational; not checked on resume).
    pub keel_version: String,
}

const PREFIX: &str = "checkpoint-";

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

/// Writes `run_dir/checkpoint-<step>` and keeps the newest `keep_last` checkpoints.
pub fn save(run_dir: &Path, model: &Transformer, opt: &AdamW, state: &TrainState, keep_last: usize) -> Result<PathBuf> {
    let name = format!("{PREFIX}{:08}", state.step);
    let tmp = run_dir.join(format!(".{name}.tmp"));
    let dest = run_dir.join(&name);
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| -> Result<()> {
        match &model.lora {
            Some(adapter) => adapter.save(&tmp)?,
            None => model.save(&tmp)?,
        }
        let n = opt.m.len();
        write_f32(
            &tmp.join("optimizer.safetensors"),
            &[("exp_avg", &[n], &opt.m), ("exp_avg_sq", &[n], &opt.v)],
            &HashMap::from([("adamw_step".to_string(), opt.step.to_string())]),
        )?;
        let state_path = tmp.join("state.json");
        let f = std::fs::File::create(&state_path)?;
        serde_json::to_writer_pretty(&f, state)?;
        f.sync_all()?;
        sync_dir(&tmp)?;
        // Replacing a checkpoint of the same step: the old one moves aside first and goes only
        // once the new one is in place, so a kill at any point leaves one of them whole.
        let aside = run_dir.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&aside);
        if dest.exists() {
            std::fs::rename(&dest, &aside)?;
        }
        std::fs::rename(&tmp, &dest)?;
        sync_dir(run_dir)?;
        let _ = std::fs::remove_dir_all(&aside);
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(
            e.context(format!("cannot write checkpoint {} (earlier checkpoints are untouched)", dest.display()))
        );
    }
    let mut all = list(run_dir)?;
    while all.len() > keep_last.max(1) {
        let old = all.remove(0);
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove old checkpoint {}", old.display()))?;
    }
    Ok(dest)
}

/// Completed checkpoints of a run, oldest first. A checkpoint moved aside by a [`save`] that was
/// killed before its replacement arrived is put back first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Ok(Vec::new()) };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(original) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".old")) else { continue };
        let dest = run_dir.join(original);
        if original.starts_with(PREFIX) && !dest.exists() {
            std::fs::rename(entry.path(), &dest)
                .with_context(|| format!("cannot restore {} to {}", entry.path().display(), dest.display()))?;
        }
    }
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Ok(Vec::new()) };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX)))
        .collect();
    found.sort();
    Ok(found)
}

/// Restores weights and optimizer moments from `dir` into `model` and `opt`, after checking that
/// the checkpoint belongs to this run. Nothing is modified if it does not.
pub fn load(
    dir: &Path,
    model: &mut Transformer,
    opt: &mut AdamW,
    config_fp: &str,
    data_fp: &str,
) -> Result<TrainState> {
    let state_path = dir.join("state.json");
    let state: TrainState = serde_json::from_str(
        &std::fs::read_to_string(&state_path).with_context(|| format!("cannot read {}", state_path.display()))?,
    )
    .with_context(|| format!("{} is corrupt", state_path.display()))?;
    if state.config_fingerprint != config_fp {
        bail!("{} was made with a different configuration (only output.*, train.max_steps and train.epochs may change on --resume); refusing to resume", dir.display());
    }
    if state.data_fingerprint != data_fp {
        bail!("{} was made on different training data (or a different tokenizer); refusing to resume", dir.display());
    }
    let params = match &model.lora {
        Some(_) => {
            LoraAdapter::load(dir, &model.config)
                .with_context(|| format!("checkpoint {} is unreadable", dir.display()))?
                .params
        }
        None => {
            let saved =
                Transformer::load(dir).with_context(|| format!("checkpoint {} is unreadable", dir.display()))?;
            ensure!(saved.config == model.config, "checkpoint {} holds a different model architecture", dir.display());
            saved.params
        }
    };
    ensure!(params.len() == model.num_trainable(), "checkpoint {} holds a different adapter", dir.display());
    let st = SafeTensors::open(&dir.join("optimizer.safetensors"))
        .with_context(|| format!("checkpoint {}", dir.display()))?;
    let (m, v) = (st.to_vec_f32("exp_avg")?, st.to_vec_f32("exp_avg_sq")?);
    ensure!(
        m.len() == opt.m.len() && v.len() == opt.v.len(),
        "checkpoint {}: optimizer state has the wrong size",
        dir.display()
    );
    // AdamW's moments: the first is any finite number, the second a finite non-negative one.
    let bad_m = m.iter().position(|x| !x.is_finite());
    let bad_v = v.iter().position(|x| !(x.is_finite() && *x >= 0.0));
    if let Some((name, i)) = bad_m.map(|i| ("exp_avg", i)).or(bad_v.map(|i| ("exp_avg_sq", i))) {
        bail!(
            "checkpoint {}: optimizer.safetensors is corrupt ({name}[{i}] is not a valid moment); resume from an \
             earlier checkpoint",
            dir.display()
        );
    }
    if let Some(i) = params.iter().position(|x| !x.is_finite()) {
        bail!("checkpoint {}: trainable parameter {i} is not finite; resume from an earlier checkpoint", dir.display());
    }
    model.trainable_mut().1.copy_from_slice(&params);
    opt.m = m;
    opt.v = v;
    opt.step = state.step;
    Ok(state)
}

/// FNV-1a over bytes, as a hex string (fingerprints).
pub fn fingerprint(bytes: impl IntoIterator<Item = u8>) -> String {
    let h = bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{h:016x}")
}
