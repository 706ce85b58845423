//! `keel eval`: multiple-choice tasks by log-likelihood (generation tasks are not built yet).

use anyhow::{bail, Context, Result};
use clap::Args;
use keel_eval::mc::{evaluate, McTask};
use keel_model::lora::LoraAdapter;
use keel_model::rng::Rng;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Task files shipped with keel (tasks/*.toml), by name.
const BUILTIN: [(&str, &str); 3] = [
    ("arc_easy", include_str!("../../../tasks/arc_easy.toml")),
    ("arc_challenge", include_str!("../../../tasks/arc_challenge.toml")),
    ("boolq", include_str!("../../../tasks/boolq.toml")),
];

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// A LoRA adapter directory (PEFT layout) merged into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated task names (arc_easy, arc_challenge, boolq) or task-file paths.
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    /// Score a seeded random subset of this many items per task (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the benchmark data lives.
    #[arg(long, default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Directory for results.json and per-item <task>.samples.jsonl.
    #[arg(long, default_value = "eval-results")]
    out: PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_rows: usize,
}

fn load_task(name: &str) -> Result<McTask> {
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return McTask::from_toml(text, name);
    }
    let path = PathBuf::from(name);
    if !path.exists() {
        bail!("unknown task \"{name}\" (built in: {}; or give a task file)", BUILTIN.map(|b| b.0).join(", "));
    }
    McTask::from_toml(&std::fs::read_to_string(&path)?, &path.display().to_string())
}

/// 95% interval of the mean of 0/1 outcomes by 1000 seeded bootstrap resamples.
fn bootstrap(correct: &[bool], seed: u64) -> (f64, f64) {
    let n = correct.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..1000)
        .map(|_| (0..n).filter(|_| correct[rng.below(n as u64) as usize]).count() as f64 / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (means[25], means[974])
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    let tasks: Vec<McTask> = a.tasks.iter().map(|t| load_task(t)).collect::<Result<_>>()?;
    let mut pre = a.model.load()?;
    if let Some(dir) = &a.adapter {
        pre.model.lora = Some(LoraAdapter::load(dir, &pre.model.config)?);
        pre.model.merge_lora();
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut summary = serde_json::Map::new();
    for task in &tasks {
        let mut items = task.items(&a.data_dir)?;
        let total = items.len();
        if a.limit > 0 && a.limit < items.len() {
            let mut rng = Rng::new(a.seed);
            let mut idx: Vec<usize> = (0..items.len()).collect();
            for i in (1..idx.len()).rev() {
                idx.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut keep: Vec<usize> = idx[..a.limit].to_vec();
            keep.sort();
            items = keep.into_iter().map(|i| items[i].clone()).collect();
        }
        let started = std::time::Instant::now();
        eprintln!("{}: scoring {} of {} items", task.name, items.len(), total);
        let (results, acc, acc_norm) = evaluate(&pre.model, &pre.tokenizer, task, &items, a.batch_rows)?;
        let secs = started.elapsed().as_secs_f64();
        let path = a.out.join(format!("{}.samples.jsonl", task.name));
        let mut f = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        for (item, r) in items.iter().zip(&results) {
            writeln!(f, "{}", json!({"source": r.source, "context": item.context, "choices": item.choices, "gold": r.gold,
                "loglikelihoods": r.loglikelihoods, "is_greedy": r.is_greedy, "pred_acc": r.pred_acc,
                "pred_acc_norm": r.pred_acc_norm, "correct": r.pred_acc == r.gold, "correct_norm": r.pred_acc_norm == r.gold}))?;
        }
        let ci = bootstrap(&results.iter().map(|r| r.pred_acc == r.gold).collect::<Vec<_>>(), a.seed);
        let ci_norm = bootstrap(&results.iter().map(|r| r.pred_acc_norm == r.gold).collect::<Vec<_>>(), a.seed);
        println!("{:14} acc {acc:.4} [{:.4}, {:.4}]  acc_norm {acc_norm:.4} [{:.4}, {:.4}]  n={}  {secs:.1} s",
            task.name, ci.0, ci.1, ci_norm.0, ci_norm.1, items.len());
        summary.insert(task.name.clone(), json!({"acc": acc, "acc_ci95": [ci.0, ci.1], "acc_norm": acc_norm,
            "acc_norm_ci95": [ci_norm.0, ci_norm.1], "n": items.len(), "of": total, "seconds": secs}));
    }
    let results = json!({"model": a.model.model, "adapter": a.adapter, "limit": a.limit, "seed": a.seed,
        "keel_version": env!("CARGO_PKG_VERSION"), "tasks": summary});
    let path = a.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
