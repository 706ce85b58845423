//! `keel eval`: the command-line face of `keel_eval::harness`.

use anyhow::Result;
use clap::Args;
use keel_eval::harness::{self, EvalOptions, PerTask};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// A LoRA adapter directory (PEFT layout) merged into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated suites and tasks. Suites: general (ifeval, gsm8k, humaneval, arc_easy,
    /// arc_challenge, boolq, mmlu), domain:gsm8k, domain:medcalc, domain:esci, and
    /// domain:FILE: the held-out part (--holdout) of your own training file, or a generation
    /// task file. Tasks: arc_easy, arc_challenge, boolq, mmlu, mmlu_5shot, gsm8k, gsm8k_8shot,
    /// ifeval, medcalc, medcalc_1shot, humaneval, esci, or a task file's path (multiple choice
    /// or generation; see tasks/).
    #[arg(long, visible_alias = "tasks", value_delimiter = ',', required = true)]
    suite: Vec<String>,
    /// Score a seeded random subset of this many items per task (0: all). TASK=N sets one
    /// task's: --limit 100 --limit ifeval=24.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    limit: Vec<String>,
    /// Seed of the subset and of the bootstrap intervals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the benchmark data lives ($KEEL_DATA, else ./data: what `keel data fetch` fills).
    #[arg(long, default_value_os_t = keel_data::default_data_dir())]
    data_dir: PathBuf,
    /// Directory for results.json and per-item <task>.samples.jsonl.
    #[arg(long, default_value = "eval-results")]
    out: PathBuf,
    /// Sequences per forward pass (and prompts generated together).
    #[arg(long, default_value_t = 8)]
    batch_rows: usize,
    /// Token budget of generation tasks (0: each task's own: GSM8K 256, MedCalc 512,
    /// HumanEval 384, IFEval 1280). TASK=N sets one task's: --max-new-tokens 0,ifeval=512.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    max_new_tokens: Vec<String>,
    /// A results.json of an earlier `keel eval` (usually the base model, same --limit and
    /// --seed): print and record each score's change against it.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The share of a domain:FILE training file that training held out (its data.holdout):
    /// those examples are scored.
    #[arg(long, default_value_t = 0.0)]
    holdout: f64,
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    let pre = a.model.load_with_adapter(a.adapter.as_deref())?;
    let opts = EvalOptions {
        suites: a.suite,
        limit: PerTask::from_args(&a.limit, "limit")?,
        seed: a.seed,
        data_dir: a.data_dir,
        out: a.out,
        batch_rows: a.batch_rows,
        max_new_tokens: PerTask::from_args(&a.max_new_tokens, "max-new-tokens")?,
        baseline: a.baseline,
        holdout: a.holdout,
    };
    harness::run(
        &pre,
        json!({"model": a.model.model, "adapter": a.adapter, "dtype": format!("{:?}", a.model.dtype).to_lowercase()}),
        &opts,
    )?;
    Ok(())
}
