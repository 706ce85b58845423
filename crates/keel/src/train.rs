//! `keel train`, `keel data inspect`, `keel merge`.

use anyhow::{Context, Result};
use clap::Args;
use keel_data::mask::show_mask;
use keel_infer::pretrained::Pretrained;
use keel_train::config::RunConfig;
use keel_train::run::{load_data, train, RunOptions};
use std::path::PathBuf;

/// A run configuration and its command-line overrides (`keel train`, `keel data inspect`).
#[derive(Args)]
pub struct ConfigArgs {
    /// The run configuration (TOML or YAML); configs/smollm2-gsm8k-talr.toml documents every
    /// field with its default.
    #[arg(long)]
    config: PathBuf,
    /// Override a field, the value parsed as TOML: --set train.lr=5e-6 --set talr.floor=0.05
    /// (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Worker threads (the same as --set train.threads=N).
    #[arg(long)]
    threads: Option<usize>,
}

impl ConfigArgs {
    /// The configuration with every override applied, validated.
    pub fn load(&self) -> Result<RunConfig> {
        let mut overrides = self.overrides.clone();
        overrides.extend(self.threads.map(|t| format!("train.threads={t}")));
        RunConfig::load(&self.config, &overrides)
    }
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Continue from the newest checkpoint in output.dir (same configuration; only output.*,
    /// train.max_steps and train.epochs may change).
    #[arg(long)]
    resume: bool,
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    let config = a.config.load()?;
    let summary = train(&config, &RunOptions { resume: a.resume, progress: true })?;
    println!("{}", summary.final_dir.display());
    Ok(())
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// How many examples to print.
    #[arg(long, default_value_t = 2)]
    examples: usize,
}

pub fn run_inspect(a: InspectArgs) -> Result<()> {
    let config = a.config.load()?;
    keel_kernels::parallel::init_threads(config.train.threads).map_err(anyhow::Error::msg)?;
    let (pre, data) = load_data(&config)?;
    println!("{}", serde_json::to_string_pretty(&data.prepared.stats)?);
    for (ex, &src) in data.prepared.examples.iter().zip(&data.prepared.source).take(a.examples) {
        println!("\n--- example {src}: {} tokens, {} supervised ---", ex.len(), ex.num_supervised());
        println!("{}", show_mask(&pre.tokenizer, ex)?);
    }
    Ok(())
}

#[derive(Args)]
pub struct MergeArgs {
    /// The initial model θ₀ (GGUF, Hugging Face directory or hf:ORG/NAME[@REVISION]).
    #[arg(long)]
    base: PathBuf,
    /// The fine-tuned model θ_ft (Hugging Face directory, e.g. a run's final/).
    #[arg(long)]
    tuned: PathBuf,
    /// Weight of the tuned model; repeat for a sweep (one output directory each).
    #[arg(long, required = true)]
    alpha: Vec<f64>,
    /// Output directory; with several alphas, one subdirectory alpha-<A> each.
    #[arg(long)]
    out: PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub fn run_merge(a: MergeArgs) -> Result<()> {
    keel_kernels::parallel::init_threads(a.threads).map_err(anyhow::Error::msg)?;
    let base = Pretrained::load(&a.base)?;
    let mut tuned = Pretrained::load(&a.tuned)?;
    for &alpha in &a.alpha {
        let merged = keel_train::merge::average(&base.model, &tuned.model, alpha)
            .with_context(|| format!("merging {} into {}", a.tuned.display(), a.base.display()))?;
        let dir = if a.alpha.len() == 1 { a.out.clone() } else { a.out.join(format!("alpha-{alpha}")) };
        let tuned_params = std::mem::replace(&mut tuned.model.params, merged.params);
        tuned.save_hf(&dir)?;
        tuned.model.params = tuned_params;
        println!("{}", dir.display());
    }
    Ok(())
}
