//! The run configuration: a TOML or YAML file, every field overridable on the command line
//! (`--set train.lr=2e-5`), unknown keys refused.

use crate::objective::talr::{Normalization, TalrConfig, Temperature};
use crate::objective::{Objective, ObjectiveKind};
use crate::schedule::Schedule;
use anyhow::{bail, ensure, Context, Result};
use keel_data::batching::Truncation;
use keel_data::dataset::{Fields, Format, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A whole run: model, data, optimization, objective settings and output. `model`, `data` and
/// `output` are required; the other sections have defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The base model.
    pub model: ModelSection,
    /// The training set and how it becomes rows.
    pub data: DataSection,
    /// Objective, optimizer and schedule.
    #[serde(default)]
    pub train: TrainSection,
    /// TALR's coefficient settings (read only when `train.objective` is `talr`).
    #[serde(default)]
    pub talr: TalrSection,
    /// Low-rank adapters (off by default).
    #[serde(default)]
    pub lora: LoraSection,
    /// Where checkpoints, metrics and the final model go.
    pub output: OutputSection,
}

/// LoRA: train low-rank adapters on the projections instead of every weight (rank 0: off).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    /// Rank r of each adapter; 0 trains every weight instead.
    pub rank: usize,
    /// Scale numerator: an adapter's update is multiplied by `alpha / rank` (default 32).
    pub alpha: f64,
    /// Dropout probability on the adapters' input, in [0, 1) (default 0.05).
    pub dropout: f64,
    /// Projections that get adapters, by Hugging Face module name (default: all seven of attention and MLP).
    pub targets: Vec<String>,
    /// The adapters' own learning rate (LoRA usually needs ≈1e-4, not full fine-tuning's 1e-6);
    /// 0 uses train.lr, as the paper did.
    pub lr: f64,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            rank: 0,
            alpha: 32.0,
            dropout: 0.05,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
                .map(String::from)
                .to_vec(),
            lr: 1e-4,
        }
    }
}

/// Which pretrained model to fine-tune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A GGUF file, a Hugging Face directory or a Hub model (`hf:ORG/NAME[@REVISION]`).
    pub path: PathBuf,
    /// The chat format, replacing the model's own (a base model has none): `gemma` or
    /// `chatml`, which keel ships, or a Jinja template file. The saved model carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}

impl ModelSection {
    /// Loads the model, with `chat_template` in place of its own when given.
    pub fn load(&self) -> Result<keel_infer::pretrained::Pretrained> {
        let mut pre = keel_infer::pretrained::Pretrained::load(&self.path)?;
        if let Some(spec) = &self.chat_template {
            pre.set_chat_template(spec)?;
        }
        Ok(pre)
    }
}

/// The training set and how it is tokenized into rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A `.jsonl` (or MedCalc-Bench `.csv`) data file.
    pub path: PathBuf,
    /// The file's layout (messages, prompt_completion, alpaca, sharegpt, gsm8k, medcalc).
    pub format: Format,
    /// What the assistant turn holds: reasoning and answer (`cot`, default) or the answer alone (`label`).
    #[serde(default = "default_target")]
    pub target: Target,
    /// Use only the first N examples (0: all).
    #[serde(default)]
    pub max_examples: usize,
    /// Hold out this share of the examples, chosen by a hash of each (default 0: none).
    /// Training never reads them; `keel eval --suite domain:FILE --holdout F` scores them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holdout: f64,
    /// Tokens per row at most, prompt and response together (default 1024; at most the model's context).
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// What happens to a longer example: `drop` (default) or `truncate`.
    #[serde(default = "default_truncation")]
    pub truncation: Truncation,
    /// Pack several examples into each row (attention never crosses them).
    #[serde(default)]
    pub packing: bool,
    /// Field names of the generic formats, when a file does not use the usual ones.
    #[serde(default)]
    pub fields: Fields,
}

/// Optimization: objective, AdamW, learning-rate schedule, batch sizes and threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// ce, talr, dft or flow.
    pub objective: ObjectiveKind,
    /// Peak learning rate (default 1e-5); `lora.lr` replaces it for adapters.
    pub lr: f64,
    /// Shape of the learning rate after warm-up: constant, linear or cosine (default) to 0.
    pub schedule: Schedule,
    /// Updates over which the learning rate rises linearly from 0 (default 0).
    pub warmup_steps: u64,
    /// Passes over the data (default 1); ignored when `max_steps` is set.
    pub epochs: u64,
    /// Stop after this many optimizer steps (0: run the epochs).
    pub max_steps: u64,
    /// Rows per micro-batch, i.e. per forward and backward (default 4).
    pub micro_batch_size: usize,
    /// Micro-batches per optimizer step (default 1).
    pub grad_accum: usize,
    /// Clip the gradient's global L2 norm to this (default 1.0).
    pub max_grad_norm: f64,
    /// AdamW's decoupled weight decay, applied to matrices only (default 0).
    pub weight_decay: f64,
    /// AdamW's first-moment decay (default 0.9).
    pub beta1: f64,
    /// AdamW's second-moment decay (default 0.999).
    pub beta2: f64,
    /// Added to AdamW's √v (default 1e-8).
    pub eps: f64,
    /// λ of the L2 penalty toward the initial weights (0: off); combines with any objective.
    pub l2_init: f64,
    /// Seeds the data order and the LoRA initialization (default 0).
    pub seed: u64,
    /// Worker threads for the kernels (default 2).
    pub threads: usize,
    /// Keep only each layer's input and recompute the layer during the backward: activation memory
    /// of one layer instead of all, for one more forward (default off).
    pub grad_checkpointing: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            objective: ObjectiveKind::Talr,
            lr: 1e-5,
            schedule: Schedule::Cosine,
            warmup_steps: 0,
            epochs: 1,
            max_steps: 0,
            micro_batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2_init: 0.0,
            seed: 0,
            threads: 2,
            grad_checkpointing: false,
        }
    }
}

/// TALR's settings: how the detached token losses become coefficients, softmax(−ℓ/τ) floored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TalrSection {
    /// How the coefficients are scaled: `simplex` (default: mean 1 over the supervised tokens, so the
    /// loss keeps CE's scale) or `raw`.
    pub normalization: Normalization,
    /// "sequence_median" (the paper's), "token_median", or a number for a fixed τ.
    pub temperature: Temperature,
    /// Minimum coefficient w_min.
    pub floor: f64,
    /// Which tokens share TALR's softmax and median.
    pub scope: TalrScope,
}

/// Which tokens share TALR's softmax and median.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TalrScope {
    /// The whole optimizer batch, across accumulated micro-batches (the paper's).
    Batch,
    /// Each micro-batch on its own.
    MicroBatch,
}

impl Default for TalrSection {
    fn default() -> Self {
        TalrSection {
            normalization: Normalization::Simplex,
            temperature: Temperature::SequenceMedian,
            floor: 0.01,
            scope: TalrScope::Batch,
        }
    }
}

/// Where the run writes its files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The run directory: checkpoints, `metrics.jsonl`, `config.json`, `final/`.
    pub dir: PathBuf,
    /// Checkpoint every N optimizer steps (0: only at the end).
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Checkpoints kept (the oldest are deleted).
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

/// Keeps `data.holdout = 0` out of the serialized config, so that configs written before the key
/// existed keep their fingerprints (checkpoints resume, sweep cells keep their ids).
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn default_target() -> Target {
    Target::Cot
}
fn default_max_seq_len() -> usize {
    1024
}
fn default_truncation() -> Truncation {
    Truncation::Drop
}
fn default_save_every() -> u64 {
    100
}
fn default_keep_last() -> usize {
    2
}

impl RunConfig {
    /// Reads `path` (`.toml`, `.yaml`/`.yml`) and applies `overrides` (`section.key=value`).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the run config {}", path.display()))?;
        let mut tree: Value = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                serde_yaml::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?
            }
            _ => {
                let t: toml::Value =
                    toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
                serde_json::to_value(t)?
            }
        };
        for o in overrides {
            apply_override(&mut tree, o)?;
        }
        Self::from_tree(tree).with_context(|| format!("in the run config {}", path.display()))
    }

    /// A run config from a parsed tree (what a file holds after overrides): strict keys, every
    /// value checked, errors naming the dotted key (`train.lr: invalid type ...`).
    pub fn from_tree(tree: Value) -> Result<Self> {
        let config: RunConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            anyhow::anyhow!("{key}: {}", e.into_inner())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values training cannot use (non-positive learning rate, eps, batch sizes or threads;
    /// betas outside [0, 1); `talr.floor` outside [0, 1]; a bad LoRA section).
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        ensure!(t.lr > 0.0 && t.lr.is_finite(), "train.lr must be positive, got {}", t.lr);
        ensure!(
            t.eps > 0.0 && t.eps.is_finite(),
            "train.eps must be positive (AdamW divides by √v + eps), got {}",
            t.eps
        );
        ensure!(
            t.micro_batch_size > 0 && t.grad_accum > 0,
            "train.micro_batch_size and train.grad_accum must be positive"
        );
        ensure!(t.epochs > 0 || t.max_steps > 0, "set train.epochs or train.max_steps");
        ensure!(t.threads > 0, "train.threads must be positive");
        ensure!(t.max_grad_norm > 0.0 && t.max_grad_norm.is_finite(), "train.max_grad_norm must be positive");
        ensure!(
            t.l2_init >= 0.0 && t.l2_init.is_finite() && t.weight_decay >= 0.0 && t.weight_decay.is_finite(),
            "train.l2_init and train.weight_decay must be finite and not negative"
        );
        ensure!(
            (0.0..1.0).contains(&t.beta1) && (0.0..1.0).contains(&t.beta2),
            "train.beta1 and train.beta2 must lie in [0, 1)"
        );
        ensure!(self.data.max_seq_len >= 2, "data.max_seq_len must be at least 2");
        keel_data::holdout::check_fraction(self.data.holdout, "data.holdout")?;
        ensure!((0.0..=1.0).contains(&self.talr.floor), "talr.floor must lie in [0, 1], got {}", self.talr.floor);
        self.lora_config()?;
        Ok(())
    }

    /// The adapter configuration when `lora.rank > 0`.
    pub fn lora_config(&self) -> Result<Option<keel_model::lora::LoraConfig>> {
        let l = &self.lora;
        if l.rank == 0 {
            return Ok(None);
        }
        ensure!(l.alpha > 0.0 && l.lr >= 0.0, "lora.alpha must be positive and lora.lr not negative");
        ensure!((0.0..1.0).contains(&l.dropout), "lora.dropout must lie in [0, 1)");
        let targets = l.targets.iter().map(|t| keel_model::lora::Module::from_name(t)).collect::<Result<Vec<_>>>()?;
        ensure!(!targets.is_empty(), "lora.targets is empty");
        Ok(Some(keel_model::lora::LoraConfig { rank: l.rank, alpha: l.alpha, dropout: l.dropout, targets }))
    }

    /// The peak learning rate of the trainable parameters.
    pub fn peak_lr(&self) -> f64 {
        if self.lora.rank > 0 && self.lora.lr > 0.0 {
            self.lora.lr
        } else {
            self.train.lr
        }
    }

    /// The objective with its settings.
    pub fn objective(&self) -> Objective {
        match self.train.objective {
            ObjectiveKind::Ce => Objective::Ce,
            ObjectiveKind::Dft => Objective::Dft,
            ObjectiveKind::Flow => Objective::Flow,
            ObjectiveKind::Talr => Objective::Talr(TalrConfig {
                normalization: self.talr.normalization,
                temperature: self.talr.temperature,
                floor: self.talr.floor,
            }),
        }
    }
}

/// `a.b=value`: value parsed as TOML (number, bool, string, array, table). A bare word or path
/// (`ce`, `runs/x`) is taken as a string; anything else that is not valid TOML is refused rather
/// than silently becoming a string.
fn apply_override(tree: &mut Value, o: &str) -> Result<()> {
    let (key, raw) = o.split_once('=').with_context(|| format!("override \"{o}\" is not section.key=value"))?;
    let value: Value = match toml::from_str::<toml::Value>(&format!("v = {raw}")) {
        Ok(t) => serde_json::to_value(&t["v"])?,
        Err(_) if is_bare_word(raw) => Value::String(raw.to_string()),
        Err(e) => {
            bail!("override {key}: {raw:?} is not a TOML value ({}); quote strings: {key}='\"...\"'", e.message())
        }
    };
    let mut node = tree;
    let parts: Vec<&str> = key.trim().split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let obj = node
            .as_object_mut()
            .with_context(|| format!("override {key}: {} is not a section", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value);
            return Ok(());
        }
        node = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
    }
    bail!("override \"{o}\" has an empty key")
}

/// A value that reads as a plain string: a word or a path, not the start of a number, array,
/// table or quoted string.
fn is_bare_word(raw: &str) -> bool {
    let starts_like_toml = raw.starts_with(|c: char| c.is_ascii_digit() || "+-.[{\"'".contains(c));
    !raw.is_empty() && !starts_like_toml && !raw.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join("keel-config-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str =
        "[model]\npath = \"m.gguf\"\n[data]\npath = \"d.jsonl\"\nformat = \"gsm8k\"\n[output]\ndir = \"runs/x\"\n";

    #[test]
    fn toml_yaml_and_overrides() {
        let c = RunConfig::load(
            &write("a.toml", MINIMAL),
            &["train.lr=2e-5".into(), "train.objective=ce".into(), "talr.temperature=0.5".into()],
        )
        .unwrap();
        assert_eq!((c.train.lr, c.train.objective), (2e-5, ObjectiveKind::Ce));
        assert_eq!(c.talr.temperature, Temperature::Fixed(0.5));
        let y = RunConfig::load(
            &write("a.yaml", "model: {path: m.gguf}\ndata: {path: d.jsonl, format: alpaca}\noutput: {dir: runs/y}\n"),
            &[],
        )
        .unwrap();
        assert_eq!(y.data.format, Format::Alpaca);
    }

    #[test]
    fn unknown_keys_and_impossible_values_are_refused() {
        let err = |text: &str, o: &[&str]| {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            format!("{:#}", RunConfig::load(&write("b.toml", text), &o).unwrap_err())
        };
        assert!(err(&format!("{MINIMAL}[train]\nlearning_rate = 1e-5\n"), &[]).contains("learning_rate"));
        assert!(err(MINIMAL, &["train.lr=-1e-5"]).contains("train.lr must be positive"));
        assert!(err(MINIMAL, &["train.micro_batch_size=0"]).contains("micro_batch_size"));
        assert!(err(MINIMAL, &["train.objective=sft"]).contains("train.objective: unknown variant `sft`"));
        assert!(err(MINIMAL, &["data.colour=1"]).contains("colour"));
        assert!(err(MINIMAL, &["talr.temperature=-1"]).contains("talr.temperature"));
        assert!(err(MINIMAL, &["talr.scope=row"]).contains("talr.scope: unknown variant `row`"));
        assert!(err(MINIMAL, &["train.eps=0"]).contains("train.eps must be positive"));
        assert!(err(MINIMAL, &["train.max_grad_norm=inf"]).contains("train.max_grad_norm"));
        // A type error names its key; nan (null once in JSON) too.
        assert!(err(MINIMAL, &["train.lr=\"fast\""]).contains("train.lr: invalid type"));
        assert!(err(&format!("{MINIMAL}[train]\nlr = nan\n"), &[]).contains("train.lr"));
        // Broken TOML in --set is refused, not taken as a string.
        assert!(err(MINIMAL, &["train.lr=[1e-5"]).contains("is not a TOML value"));
    }
}
