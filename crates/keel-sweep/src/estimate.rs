//! `keel sweep run --dry-run`: the cells, and what they will cost, from measured throughput.

use crate::layout::{read_status, State, SweepDir};
use crate::spec::Sweep;
use anyhow::Result;
use keel_infer::progress::format_duration;
use keel_train::run::load_data;
use std::collections::HashMap;
use std::path::Path;

/// Training throughput of keel on SmolLM2-135M with 2 threads (tokens/s), BENCHMARKS.md's
/// reference machine: the fallback when the sweep directory holds no measured steps yet.
const REFERENCE_TOKENS_PER_S: f64 = 139.0;
const REFERENCE_PARAMS: f64 = 134.5e6;

/// Median tokens/s over the steps in the sweep's metrics.jsonl files, and how many.
fn measured_throughput(dir: &SweepDir) -> Option<(f64, usize)> {
    let cells = std::fs::read_dir(dir.root.join("cells")).ok()?;
    let mut rates: Vec<f64> = cells
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("run/metrics.jsonl")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["tokens_per_s"].as_f64())
                .collect::<Vec<_>>()
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    Some((rates[rates.len() / 2], rates.len()))
}

/// Seconds the base's evaluation took (each cell's takes about as long).
fn measured_eval(dir: &SweepDir) -> Option<f64> {
    let text = std::fs::read_to_string(dir.base().join("eval/results.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(v["tasks"].as_object()?.values().filter_map(|t| t["seconds"].as_f64()).sum())
}

/// The dry run's table: each cell, its state, steps, tokens and estimated time. Tokenizes each
/// distinct training set once (that is what the step count and the tokens need).
pub fn dry_run(sweep: &Sweep, out: &Path, jobs: usize, threads: usize) -> Result<String> {
    let dir = SweepDir::new(out);
    let per_job = (threads / jobs.max(1)).max(1);
    let (rate, source) = match measured_throughput(&dir) {
        Some((r, n)) => {
            (r, format!("measured: median of {n} training steps in {}/cells/*/run/metrics.jsonl", out.display()))
        }
        None => (0.0, String::new()),
    };
    let eval = measured_eval(&dir);
    let mut data: HashMap<String, (f64, usize, f64)> = HashMap::new();
    let mut lines = String::new();
    let (mut total, mut to_run) = (0.0, 0);
    // Each training cell's estimated training time, for merges that must train their source again.
    let mut train_time: HashMap<&str, f64> = HashMap::new();
    for cell in &sweep.cells {
        let state = read_status(&dir.cell(&cell.info.id)).state;
        let mut train_s = 0.0;
        let mut steps = 0;
        if let Some(config) = &cell.config {
            let key = serde_json::json!([config.model.path, config.data]).to_string();
            if !data.contains_key(&key) {
                let (pre, d) = load_data(config)?;
                let tokens: usize = d.prepared.examples.iter().map(|e| e.len()).sum();
                let n = d.prepared.examples.len().max(1);
                data.insert(key.clone(), (tokens as f64 / n as f64, n, pre.model.params.len() as f64));
            }
            let (mean_len, n, params) = data[&key];
            let t = &config.train;
            let per_step = t.micro_batch_size * t.grad_accum;
            steps = if t.max_steps > 0 { t.max_steps as usize } else { t.epochs as usize * n.div_ceil(per_step) };
            let reference = REFERENCE_TOKENS_PER_S * REFERENCE_PARAMS / params * per_job as f64 / 2.0;
            let r = if rate > 0.0 { rate } else { reference };
            train_s = steps as f64 * per_step.min(n) as f64 * mean_len / r;
            train_time.insert(&cell.info.id, train_s);
        }
        if let Some(from) = &cell.info.from {
            // A source that finished without its weights (keep_weights = false) is trained again.
            let source = dir.cell(from);
            if read_status(&source).state == State::Done && !source.join("run/final/config.json").exists() {
                train_s = train_time.get(from.as_str()).copied().unwrap_or(0.0);
            }
        }
        let cost = train_s + eval.unwrap_or(0.0);
        if state != State::Done {
            total += cost;
            to_run += 1;
        }
        lines.push_str(&format!(
            "{:>5}  {:16}  {:40}  {:10}  {:>6}  {:>9}\n",
            cell.info.index,
            cell.info.id,
            cell.info.label(),
            state.name(),
            steps,
            format_duration(cost)
        ));
    }
    let throughput = if source.is_empty() {
        format!(
            "training throughput not measured in this sweep yet: BENCHMARKS.md's reference, {REFERENCE_TOKENS_PER_S} \
             tokens/s for a 135M model on 2 threads, scaled to each model's size and {per_job} threads"
        )
    } else {
        format!("training throughput {rate:.0} tokens/s ({source})")
    };
    let eval_note = match eval {
        Some(s) => format!("evaluation {} per cell (measured: the base's in {})", format_duration(s), out.display()),
        None => "evaluation not counted: it is measured once the base model is evaluated".into(),
    };
    Ok(format!(
        "{} cells, {to_run} to run in {}\n{throughput}\n{eval_note}\n{:>5}  {:16}  {:40}  {:10}  {:>6}  {:>9}\n{lines}\
         estimated: {} of compute, about {} with --jobs {jobs}\n",
        sweep.cells.len(),
        out.display(),
        "index",
        "id",
        "cell",
        "state",
        "steps",
        "est. time",
        format_duration(total),
        format_duration(total / jobs.max(1) as f64)
    ))
}
