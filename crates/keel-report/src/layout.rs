//! Reading a sweep directory as `docs/sweep-layout.md` describes it. Every error names the file
//! and, where one is at fault, the key.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `eval` object of sweep.json: which tasks make the domain and general scores, and the
/// item subset (limit, seed) every model was scored on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct EvalSettings {
    /// Tasks whose primary metrics average to the domain score.
    pub domain_tasks: Vec<String>,
    /// Tasks whose primary metrics average to the general score.
    pub general_tasks: Vec<String>,
    /// Items scored per task (0: all): a number, or `{"default": N, "<task>": M}`.
    pub limit: Value,
    /// Seed of the item subset.
    pub seed: u64,
}

/// One cell as cell.json (and sweep.json's `cells`) describes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CellSpec {
    pub id: String,
    pub index: usize,
    pub method: String,
    pub kind: String,
    pub lr: f64,
    pub seed: u64,
    #[serde(default)]
    pub axes: BTreeMap<String, Value>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub alpha: Option<f64>,
}

/// sweep.json.
#[derive(Debug, Deserialize)]
pub(crate) struct SweepFile {
    pub sweep_hash: String,
    pub keel_version: String,
    pub eval: EvalSettings,
    pub cells: Vec<CellSpec>,
    /// What the cells' meaning depends on; the report reads `analyze.general_data`.
    #[serde(default)]
    pub settings: Value,
}

/// status.json; a cell without one is pending.
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct Status {
    pub state: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub started: Option<String>,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
}

/// A task's primary score in a results.json.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskScore {
    pub metric: String,
    pub score: f64,
    pub n: u64,
}

/// One task's samples file: each item's (passed, count) on the primary metric, and its source
/// (to check that two models were scored on the same items in the same order).
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    pub verdicts: Vec<(u32, u32)>,
    pub sources: Vec<Option<String>>,
}

/// Code lengths of analyze.json.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CodeLengths {
    pub domain_delta_l: Option<f64>,
    pub general_delta_l: Option<f64>,
    pub domain_code_length: Option<f64>,
    pub general_code_length: Option<f64>,
}

/// What a finished model (the base or a done cell) contributes: scores, samples, code lengths.
#[derive(Debug, Clone)]
pub(crate) struct ModelOutputs {
    pub scores: BTreeMap<String, TaskScore>,
    /// Per task; `None` where the samples file is absent (no interval for that task).
    pub samples: BTreeMap<String, Option<Samples>>,
    pub code_lengths: Option<CodeLengths>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub(crate) fn read_sweep(dir: &Path) -> Result<SweepFile> {
    let path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (is this a sweep directory written by `keel sweep run`?)", path.display())
    })?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let sweep: SweepFile =
        serde_json::from_value(value).with_context(|| format!("{} does not match the sweep layout", path.display()))?;
    let all_tasks = sweep.eval.domain_tasks.iter().chain(&sweep.eval.general_tasks);
    for (key, tasks) in [("domain_tasks", &sweep.eval.domain_tasks), ("general_tasks", &sweep.eval.general_tasks)] {
        if tasks.is_empty() {
            bail!("{}: eval.{key} is empty: the report plots domain against general scores", path.display());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for task in all_tasks {
        if !seen.insert(task) {
            bail!("{}: task \"{task}\" is listed twice in eval.domain_tasks/eval.general_tasks", path.display());
        }
    }
    for (i, cell) in sweep.cells.iter().enumerate() {
        if !(cell.lr.is_finite() && cell.lr > 0.0) {
            bail!("{}: cells[{i}].lr is {}, not a positive learning rate", path.display(), cell.lr);
        }
        if cell.kind != "train" && cell.kind != "merge" {
            bail!("{}: cells[{i}].kind is \"{}\", neither \"train\" nor \"merge\"", path.display(), cell.kind);
        }
    }
    Ok(sweep)
}

/// A model's status.json, or `pending` where it has none.
pub(crate) fn read_status(model_dir: &Path) -> Result<Status> {
    let path = model_dir.join("status.json");
    if !path.exists() {
        return Ok(Status { state: "pending".into(), ..Status::default() });
    }
    let status: Status = serde_json::from_value(read_json(&path)?)
        .with_context(|| format!("{} does not match the sweep layout", path.display()))?;
    const STATES: [&str; 5] = ["pending", "training", "evaluating", "done", "failed"];
    if !STATES.contains(&status.state.as_str()) {
        bail!("{}: state \"{}\" is none of {}", path.display(), status.state, STATES.join(", "));
    }
    Ok(status)
}

/// The tasks' primary scores of `eval/results.json`, checked to be on the sweep's items.
fn read_results(path: &Path, eval: &EvalSettings) -> Result<BTreeMap<String, TaskScore>> {
    let results = read_json(path)?;
    for (key, want) in [("limit", eval.limit.clone()), ("seed", eval.seed.into())] {
        if results[key] != want {
            bail!(
                "{}: {key} is {}, the sweep's eval.{key} is {want}: not the sweep's items",
                path.display(),
                results[key]
            );
        }
    }
    let mut scores = BTreeMap::new();
    for task in eval.domain_tasks.iter().chain(&eval.general_tasks) {
        let entry = &results["tasks"][task];
        if !entry.is_object() {
            bail!("{}: tasks.{task} is missing (the sweep scores it)", path.display());
        }
        let metric = entry["primary_metric"]
            .as_str()
            .with_context(|| format!("{}: tasks.{task}.primary_metric is missing or not a string", path.display()))?;
        let score = entry[metric]
            .as_f64()
            .filter(|s| s.is_finite())
            .with_context(|| format!("{}: tasks.{task}.{metric} is missing or not a number", path.display()))?;
        let n = entry["n"]
            .as_u64()
            .with_context(|| format!("{}: tasks.{task}.n is missing or not a count", path.display()))?;
        scores.insert(task.clone(), TaskScore { metric: metric.to_string(), score, n });
    }
    Ok(scores)
}

/// One item's verdict on `metric`: `true`/`false`, `[passed, count]`, or, for multiple-choice
/// samples that record the prediction rather than the verdict, `pred_<metric> == gold`.
fn verdict(line: &Value, metric: &str) -> Option<(u32, u32)> {
    match &line[metric] {
        Value::Bool(ok) => Some((*ok as u32, 1)),
        Value::Array(pair) if pair.len() == 2 => {
            let (passed, count) = (pair[0].as_u64()?, pair[1].as_u64()?);
            (passed <= count).then_some((u32::try_from(passed).ok()?, u32::try_from(count).ok()?))
        }
        Value::Null => {
            let (pred, gold) = (&line[format!("pred_{metric}")], &line["gold"]);
            (!pred.is_null() && !gold.is_null()).then(|| ((pred == gold) as u32, 1))
        }
        _ => None,
    }
}

fn read_samples(path: &Path, metric: &str) -> Result<Samples> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut samples = Samples { verdicts: Vec::new(), sources: Vec::new() };
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}: not valid JSON", path.display(), i + 1))?;
        let v = verdict(&value, metric).with_context(|| {
            format!(
                "{} line {}: key \"{metric}\" is not a verdict (true/false or [passed, count])",
                path.display(),
                i + 1
            )
        })?;
        samples.verdicts.push(v);
        samples.sources.push(value["source"].as_str().map(String::from));
    }
    Ok(samples)
}

fn read_code_lengths(path: &Path) -> Result<Option<CodeLengths>> {
    if !path.exists() {
        return Ok(None);
    }
    let value = read_json(path)?;
    let number = |part: &str, key: &str| -> Result<Option<f64>> {
        match &value[part][key] {
            Value::Null => Ok(None),
            v => v.as_f64().map(Some).with_context(|| format!("{}: {part}.{key} is not a number", path.display())),
        }
    };
    Ok(Some(CodeLengths {
        domain_delta_l: number("domain", "delta_l")?,
        general_delta_l: number("general", "delta_l")?,
        domain_code_length: number("domain", "code_length")?,
        general_code_length: number("general", "code_length")?,
    }))
}

/// Scores, samples and code lengths of a finished model directory (the base or a cell).
pub(crate) fn read_outputs(model_dir: &Path, eval: &EvalSettings) -> Result<ModelOutputs> {
    let eval_dir = model_dir.join("eval");
    let scores = read_results(&eval_dir.join("results.json"), eval)?;
    let mut samples = BTreeMap::new();
    for (task, score) in &scores {
        let path: PathBuf = eval_dir.join(format!("{task}.samples.jsonl"));
        let read = if path.exists() { Some(read_samples(&path, &score.metric)?) } else { None };
        if let Some(s) = &read {
            if s.verdicts.len() as u64 != score.n {
                bail!(
                    "{}: {} items, but results.json says tasks.{task}.n = {}",
                    path.display(),
                    s.verdicts.len(),
                    score.n
                );
            }
        }
        samples.insert(task.clone(), read);
    }
    Ok(ModelOutputs { scores, samples, code_lengths: read_code_lengths(&model_dir.join("analyze.json"))? })
}
