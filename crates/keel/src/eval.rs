//! `keel eval`: multiple-choice tasks by log-likelihood, and generation tasks (GSM8K, MedCalc)
//! scored from greedy answers.

use anyhow::{bail, Context, Result};
use clap::Args;
use keel_eval::gen_tasks::{self, GenTask};
use keel_eval::mc::{evaluate, McTask};
use keel_model::lora::LoraAdapter;
use keel_model::rng::Rng;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Task files shipped with keel (tasks/*.toml), by name.
const BUILTIN: [(&str, &str); 5] = [
    ("arc_easy", include_str!("../../../tasks/arc_easy.toml")),
    ("arc_challenge", include_str!("../../../tasks/arc_challenge.toml")),
    ("boolq", include_str!("../../../tasks/boolq.toml")),
    ("mmlu", include_str!("../../../tasks/mmlu.toml")),
    ("mmlu_5shot", include_str!("../../../tasks/mmlu_5shot.toml")),
];

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// A LoRA adapter directory (PEFT layout) merged into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated task names (arc_easy, arc_challenge, boolq, mmlu, mmlu_5shot; gsm8k,
    /// gsm8k_8shot, medcalc, medcalc_1shot, humaneval, esci) or
    /// multiple-choice task-file paths.
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
    /// Sequences per forward pass (and prompts generated together).
    #[arg(long, default_value_t = 8)]
    batch_rows: usize,
    /// Token budget of generation tasks (0: the task's own, 256 for GSM8K, 512 for MedCalc).
    #[arg(long, default_value_t = 0)]
    max_new_tokens: usize,
}

enum Task {
    Mc(McTask),
    Gen(GenTask),
}

/// A seeded random subset of `limit` items, in their original order (all of them for 0).
fn subsample<T: Clone>(items: Vec<T>, limit: usize, seed: u64) -> Vec<T> {
    if limit == 0 || limit >= items.len() {
        return items;
    }
    let mut rng = Rng::new(seed);
    let mut idx: Vec<usize> = (0..items.len()).collect();
    rng.shuffle(&mut idx);
    let mut keep: Vec<usize> = idx[..limit].to_vec();
    keep.sort();
    keep.into_iter().map(|i| items[i].clone()).collect()
}

fn load_task(name: &str) -> Result<Task> {
    if let Some(t) = GenTask::from_name(name) {
        return Ok(Task::Gen(t));
    }
    load_mc_task(name).map(Task::Mc)
}

fn load_mc_task(name: &str) -> Result<McTask> {
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return McTask::from_toml(text, name);
    }
    let path = PathBuf::from(name);
    if !path.exists() {
        bail!("unknown task \"{name}\" (built in: {}, gsm8k, gsm8k_8shot, medcalc, medcalc_1shot, humaneval, esci; or give a task file)", BUILTIN.map(|b| b.0).join(", "));
    }
    McTask::from_toml(&std::fs::read_to_string(&path)?, &path.display().to_string())
}

/// Accuracy per subject.
fn by_subject(items: &[keel_eval::mc::McItem], correct: &[bool]) -> std::collections::BTreeMap<String, f64> {
    let mut counts: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (item, &ok) in items.iter().zip(correct) {
        let e = counts.entry(item.subject.clone().unwrap_or_default()).or_default();
        e.0 += ok as usize;
        e.1 += 1;
    }
    counts.into_iter().map(|(s, (ok, n))| (s, ok as f64 / n as f64)).collect()
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
    let tasks: Vec<Task> = a.tasks.iter().map(|t| load_task(t)).collect::<Result<_>>()?;
    let mut pre = a.model.load()?;
    if let Some(dir) = &a.adapter {
        pre.model.lora = Some(LoraAdapter::load(dir, &pre.model.config)?);
        pre.model.merge_lora();
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut summary = serde_json::Map::new();
    let mut subject_scores = std::collections::BTreeMap::new();
    for task in &tasks {
        let started = std::time::Instant::now();
        // Per item: a JSON line for the samples file, and for each metric whether it was right.
        let (name, samples, verdicts): (String, Vec<serde_json::Value>, Vec<(&str, Vec<bool>)>) = match task {
            Task::Mc(task) => {
                let all = task.items(&a.data_dir)?;
                let total = all.len();
                let items = subsample(all, a.limit, a.seed);
                eprintln!("{}: scoring {} of {total} items", task.name, items.len());
                let (results, _, _) = evaluate(&pre.model, &pre.tokenizer, task, &items, a.batch_rows)?;
                let samples = items.iter().zip(&results).map(|(item, r)| json!({"source": r.source, "context": item.context,
                    "choices": item.choices, "gold": r.gold, "loglikelihoods": r.loglikelihoods, "is_greedy": r.is_greedy,
                    "pred_acc": r.pred_acc, "pred_acc_norm": r.pred_acc_norm})).collect();
                let acc: Vec<bool> = results.iter().map(|r| r.pred_acc == r.gold).collect();
                let acc_norm = results.iter().map(|r| r.pred_acc_norm == r.gold).collect();
                if task.subjects.is_some() {
                    subject_scores.insert(task.name.clone(), by_subject(&items, &acc));
                }
                (task.name.clone(), samples, vec![("acc", acc), ("acc_norm", acc_norm)])
            }
            Task::Gen(task) => {
                let all = task.items(&a.data_dir)?;
                let total = all.len();
                let items = subsample(all, a.limit, a.seed);
                eprintln!("{}: answering {} of {total} questions", task.name(), items.len());
                let outputs = gen_tasks::run(&pre, *task, &items, a.batch_rows, a.max_new_tokens)?;
                let mut verdicts: Vec<(&str, Vec<bool>)> = Vec::new();
                let mut samples = Vec::new();
                for (item, output) in items.iter().zip(&outputs) {
                    let scores = task.score(item, output)?;
                    let mut sample = json!({"source": item.source, "prompt": item.prompt, "output": output, "reference": item.reference});
                    for (k, (metric, extracted, ok)) in scores.into_iter().enumerate() {
                        sample[format!("{metric}_extracted")] = extracted;
                        sample[metric] = json!(ok);
                        if verdicts.len() <= k {
                            verdicts.push((metric, Vec::new()));
                        }
                        verdicts[k].1.push(ok);
                    }
                    samples.push(sample);
                }
                (task.name().to_string(), samples, verdicts)
            }
        };
        let secs = started.elapsed().as_secs_f64();
        let path = a.out.join(format!("{name}.samples.jsonl"));
        let mut f = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        for s in &samples {
            writeln!(f, "{s}")?;
        }
        let mut entry = json!({"n": samples.len(), "seconds": secs});
        let mut line = format!("{name:14}");
        for (metric, v) in &verdicts {
            let score = v.iter().filter(|&&x| x).count() as f64 / v.len().max(1) as f64;
            let ci = bootstrap(v, a.seed);
            entry[*metric] = json!(score);
            entry[format!("{metric}_ci95")] = json!([ci.0, ci.1]);
            line.push_str(&format!(" {metric} {score:.4} [{:.4}, {:.4}]", ci.0, ci.1));
        }
        if let Some(per_subject) = subject_scores.get(&name) {
            // acc above is the micro average (over items); the macro average weighs subjects equally.
            let macro_acc = per_subject.values().sum::<f64>() / per_subject.len().max(1) as f64;
            entry["acc_macro"] = json!(macro_acc);
            entry["acc_by_subject"] = json!(per_subject);
            line.push_str(&format!(" acc_macro {macro_acc:.4} ({} subjects)", per_subject.len()));
        }
        println!("{line}  n={}  {secs:.1} s", samples.len());
        summary.insert(name, entry);
    }
    let results = json!({"model": a.model.model, "adapter": a.adapter, "limit": a.limit, "seed": a.seed,
        "keel_version": env!("CARGO_PKG_VERSION"), "tasks": summary});
    let path = a.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
