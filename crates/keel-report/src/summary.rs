//! The summary: every number the report shows, computed from the sweep directory alone.

use crate::guideline::{guideline, Guideline};
use crate::layout::{self, CellSpec, EvalSettings, ModelOutputs, Status};
use crate::pareto::frontier;
use crate::stats::{self, mean, paired_bootstrap, stable_hash, PairedTask};
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Axes that only pick a seed: cells differing in them are one point.
const SEED_AXES: [&str; 2] = ["train.seed", "seed"];
/// Axes already written as the point's LR or α, left out of its label.
const SHOWN_AXES: [&str; 3] = ["train.lr", "lr", "alpha"];

/// Everything `keel report` shows, a pure function of the sweep directory's files. Its JSON form
/// (summary.json) leaves out times and timestamps, so that a sweep killed and resumed gives the
/// same summary.json as one run straight through; the report's time table shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What was run: keel version, sweep hash, eval settings, seeds.
    pub provenance: Provenance,
    /// How the intervals were computed.
    pub bootstrap: Bootstrap,
    /// The base model's scores: the origin of every delta.
    pub base: BaseSummary,
    /// One point per (method, lr, α, other non-seed axes): the mean over its seeds.
    pub points: Vec<Point>,
    /// Whether the base (no fine-tuning) is itself on the Pareto frontier.
    pub base_on_frontier: bool,
    /// Every cell of the sweep in index order, with its state and time.
    pub cells: Vec<CellSummary>,
    /// Cells not in any point: failed, unfinished, or with unreadable outputs.
    pub excluded: Vec<ExcludedCell>,
    /// The stated rule and what it picks.
    pub guideline: Guideline,
    /// Intervals that could not be computed, and why.
    pub warnings: Vec<String>,
}

/// Provenance of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// keel version that ran the sweep (sweep.json).
    pub keel_version: String,
    /// Fingerprint of the sweep file's resolved content (sweep.json).
    pub sweep_hash: String,
    /// Tasks, item limit and item seed of every evaluation.
    pub eval: EvalSettings,
    /// Training seeds of the cells, each once, ascending.
    pub train_seeds: Vec<u64>,
    /// The file of general responses written by people that the general ΔL measures (sweep.json's
    /// `analyze.general_data`); absent when it measures the base model's own answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub general_data: Option<String>,
    /// Cells in the sweep.
    pub cells_total: usize,
    /// Cells done and read.
    pub cells_done: usize,
    /// Sum of every status.json's seconds (base included). Left out of summary.json, as all
    /// times are: a resumed sweep's summary.json must equal an uninterrupted one's.
    #[serde(skip)]
    pub total_seconds: f64,
}

/// The bootstrap's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    /// Resamples per interval.
    pub resamples: usize,
    /// Base seed in hex (a string: JSON readers lose integers above 2^53); each interval mixes
    /// in a hash of its point's label and task.
    pub seed: String,
    /// Percentile interval level.
    pub level: f64,
    /// What a resample draws.
    pub method: String,
}

/// A task's score of the base.
#[derive(Debug, Clone, Serialize)]
pub struct BaseTask {
    /// The task's primary metric.
    pub metric: String,
    /// Its score.
    pub score: f64,
    /// Items scored.
    pub n: u64,
}

/// The base model.
#[derive(Debug, Clone, Serialize)]
pub struct BaseSummary {
    /// Mean of the domain tasks' primary metrics.
    pub domain_score: f64,
    /// Mean of the general tasks' primary metrics.
    pub general_score: f64,
    /// Per task.
    pub tasks: BTreeMap<String, BaseTask>,
    /// Code length (nats/token) of the domain reference responses, if analyzed.
    pub domain_code_length: Option<f64>,
    /// Code length (nats/token) of the general responses, if analyzed.
    pub general_code_length: Option<f64>,
    /// Seconds per phase (status.json; not in summary.json).
    #[serde(skip)]
    pub seconds: BTreeMap<String, f64>,
    /// status.json's start time (not in summary.json).
    #[serde(skip)]
    pub started: Option<String>,
    /// status.json's end time (not in summary.json).
    #[serde(skip)]
    pub finished: Option<String>,
}

/// A score of a point: mean over seeds, change against the base, intervals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Score {
    /// Mean over seeds.
    pub score: f64,
    /// `score` minus the base's.
    pub delta: f64,
    /// Paired bootstrap 95% interval of `delta` over items × seeds (None where samples are
    /// missing or not paired with the base's).
    pub ci95: Option<[f64; 2]>,
    /// Smallest and largest single-seed delta.
    pub seed_range: [f64; 2],
}

impl Score {
    /// Whether the interval excludes zero (false without an interval).
    pub fn resolved(&self) -> bool {
        self.ci95.is_some_and(|[lo, hi]| lo > 0.0 || hi < 0.0)
    }
}

/// One task's score of a point.
#[derive(Debug, Clone, Serialize)]
pub struct TaskScore {
    /// The task's primary metric.
    pub metric: String,
    /// Score and delta with intervals.
    #[serde(flatten)]
    pub score: Score,
    /// Items scored per seed.
    pub n: u64,
}

/// One point of the Pareto plot: cells that differ only in their seed.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Method, α, other axes and LR, e.g. `sft data.target=label lr=1e-5`.
    pub label: String,
    /// The label without the LR: one line of the per-LR curves.
    pub series: String,
    /// Method name.
    pub method: String,
    /// `train` or `merge`.
    pub kind: String,
    /// Learning rate (for a merge, that of the cell it merges).
    pub lr: f64,
    /// WiSE-FT weight of a merge.
    pub alpha: Option<f64>,
    /// The crossed axes without the seed.
    pub axes: BTreeMap<String, Value>,
    /// Seeds, in cell order.
    pub seeds: Vec<u64>,
    /// Cell ids, in cell order.
    pub cells: Vec<String>,
    /// Domain score.
    pub domain: Score,
    /// General score.
    pub general: Score,
    /// Per task.
    pub tasks: BTreeMap<String, TaskScore>,
    /// Mean ΔL on domain data over the seeds that measured it.
    pub delta_l_domain: Option<f64>,
    /// Mean ΔL on general data over the seeds that measured it.
    pub delta_l_general: Option<f64>,
    /// The smallest and largest ΔL on domain data among those seeds.
    pub delta_l_domain_seed_range: Option<[f64; 2]>,
    /// The smallest and largest ΔL on general data among those seeds.
    pub delta_l_general_seed_range: Option<[f64; 2]>,
    /// Whether no other point (nor the base) is at least as good on both axes and better on one.
    pub pareto: bool,
}

/// One cell, whatever its state.
#[derive(Debug, Clone, Serialize)]
pub struct CellSummary {
    /// Cell id (its directory under cells/).
    pub id: String,
    /// Index in the sweep.
    pub index: usize,
    /// Method.
    pub method: String,
    /// `train` or `merge`.
    pub kind: String,
    /// Learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// WiSE-FT weight of a merge.
    pub alpha: Option<f64>,
    /// The train cell a merge averages with the base.
    pub from: Option<String>,
    /// pending, training, evaluating, done, failed, or unreadable.
    pub state: String,
    /// The failure, or why the outputs could not be read.
    pub error: Option<String>,
    /// status.json's start time (not in summary.json).
    #[serde(skip)]
    pub started: Option<String>,
    /// status.json's end time (not in summary.json).
    #[serde(skip)]
    pub finished: Option<String>,
    /// Seconds per phase (not in summary.json).
    #[serde(skip)]
    pub seconds: BTreeMap<String, f64>,
    /// Domain score, when done.
    pub domain_score: Option<f64>,
    /// General score, when done.
    pub general_score: Option<f64>,
    /// ΔL on domain data (analyze.json).
    pub delta_l_domain: Option<f64>,
    /// ΔL on general data (analyze.json).
    pub delta_l_general: Option<f64>,
}

/// A cell left out of the points.
#[derive(Debug, Clone, Serialize)]
pub struct ExcludedCell {
    /// Cell id.
    pub id: String,
    /// Method, LR and seed, readable.
    pub label: String,
    /// Its state (`unreadable` for a done cell whose files are broken).
    pub state: String,
    /// The error, if any.
    pub error: Option<String>,
}

/// A done cell with its outputs.
struct DoneCell<'a> {
    spec: &'a CellSpec,
    outputs: ModelOutputs,
}

/// Summarize the sweep directory `sweep_dir`: read sweep.json, the base and every cell, and
/// compute points, intervals, the frontier and the guideline.
pub fn summarize(sweep_dir: &Path) -> Result<Summary> {
    let sweep = layout::read_sweep(sweep_dir)?;
    let base_dir = sweep_dir.join("base");
    let base_status = layout::read_status(&base_dir)?;
    if base_status.state != "done" {
        bail!(
            "{}: state is \"{}\": the base must be evaluated before a report",
            base_dir.join("status.json").display(),
            base_status.state
        );
    }
    let base = layout::read_outputs(&base_dir, &sweep.eval)?;
    let base_summary = summarize_base(&base, &sweep.eval, &base_status);
    let mut cells = Vec::new();
    let mut done = Vec::new();
    for spec in &sweep.cells {
        let (summary, outputs) = read_cell(sweep_dir, spec, &sweep.eval, &base_summary);
        cells.push(summary);
        done.extend(outputs.map(|outputs| DoneCell { spec, outputs }));
    }
    let mut warnings = Vec::new();
    let mut points: Vec<Point> =
        group(&done).into_iter().map(|g| point(&g, &base, &base_summary, &sweep.eval, &mut warnings)).collect();
    let coordinates: Vec<(f64, f64)> = points.iter().map(|p| (p.domain.delta, p.general.delta)).collect();
    let on_frontier = frontier(&coordinates);
    for (p, on) in points.iter_mut().zip(&on_frontier.points) {
        p.pareto = *on;
    }
    let excluded = cells
        .iter()
        .filter(|c| c.state != "done")
        .map(|c| ExcludedCell {
            id: c.id.clone(),
            label: cell_label(c),
            state: c.state.clone(),
            error: c.error.clone(),
        })
        .collect();
    let mut train_seeds: Vec<u64> = sweep.cells.iter().map(|c| c.seed).collect();
    train_seeds.sort_unstable();
    train_seeds.dedup();
    // Starting from 0.0 rather than Sum's -0.0, so an empty sweep reports 0, not -0.
    let total_seconds =
        base_summary.seconds.values().chain(cells.iter().flat_map(|c| c.seconds.values())).fold(0.0, |a, s| a + s);
    let general_data = sweep.settings["analyze"]["general_data"].as_str().map(String::from);
    Ok(Summary {
        provenance: Provenance {
            keel_version: sweep.keel_version,
            sweep_hash: sweep.sweep_hash,
            eval: sweep.eval,
            train_seeds,
            general_data: general_data.clone(),
            cells_total: cells.len(),
            cells_done: done.len(),
            total_seconds,
        },
        bootstrap: Bootstrap {
            resamples: stats::RESAMPLES,
            seed: format!("{:#x}", stats::BOOTSTRAP_SEED),
            level: 0.95,
            method:
                "percentile interval; each resample draws the point's seeds with replacement, then each task's items \
                     with replacement, and scores the base and every drawn seed on the same drawn items (paired)"
                    .into(),
        },
        guideline: guideline(&points, general_data.is_none()),
        base: base_summary,
        points,
        base_on_frontier: on_frontier.base,
        cells,
        excluded,
        warnings,
    })
}

fn summarize_base(base: &ModelOutputs, eval: &EvalSettings, status: &Status) -> BaseSummary {
    let code_lengths = base.code_lengths.unwrap_or_default();
    BaseSummary {
        domain_score: suite_score(base, &eval.domain_tasks),
        general_score: suite_score(base, &eval.general_tasks),
        tasks: base
            .scores
            .iter()
            .map(|(t, s)| (t.clone(), BaseTask { metric: s.metric.clone(), score: s.score, n: s.n }))
            .collect(),
        domain_code_length: code_lengths.domain_code_length,
        general_code_length: code_lengths.general_code_length,
        seconds: status.seconds.clone(),
        started: status.started.clone(),
        finished: status.finished.clone(),
    }
}

/// Mean of the tasks' primary scores (read_outputs has checked that every task is there).
fn suite_score(outputs: &ModelOutputs, tasks: &[String]) -> f64 {
    mean(&tasks.iter().map(|t| outputs.scores[t].score).collect::<Vec<_>>())
}

/// A cell's summary, and its outputs when it is done and they can be read.
fn read_cell(
    sweep_dir: &Path,
    spec: &CellSpec,
    eval: &EvalSettings,
    base: &BaseSummary,
) -> (CellSummary, Option<ModelOutputs>) {
    let dir = sweep_dir.join("cells").join(&spec.id);
    let mut summary = CellSummary {
        id: spec.id.clone(),
        index: spec.index,
        method: spec.method.clone(),
        kind: spec.kind.clone(),
        lr: spec.lr,
        seed: spec.seed,
        alpha: spec.alpha,
        from: spec.from.clone(),
        state: "unreadable".into(),
        error: None,
        started: None,
        finished: None,
        seconds: BTreeMap::new(),
        domain_score: None,
        general_score: None,
        delta_l_domain: None,
        delta_l_general: None,
    };
    let status = match layout::read_status(&dir) {
        Ok(status) => status,
        Err(e) => {
            summary.error = Some(format!("{e:#}"));
            return (summary, None);
        }
    };
    summary.state = status.state.clone();
    summary.error = status.error.clone();
    (summary.started, summary.finished, summary.seconds) = (status.started, status.finished, status.seconds);
    if summary.state != "done" {
        return (summary, None);
    }
    match layout::read_outputs(&dir, eval).and_then(|o| check_comparable(&o, base, &dir).map(|()| o)) {
        Ok(outputs) => {
            summary.domain_score = Some(suite_score(&outputs, &eval.domain_tasks));
            summary.general_score = Some(suite_score(&outputs, &eval.general_tasks));
            let code_lengths = outputs.code_lengths.unwrap_or_default();
            (summary.delta_l_domain, summary.delta_l_general) =
                (code_lengths.domain_delta_l, code_lengths.general_delta_l);
            (summary, Some(outputs))
        }
        Err(e) => {
            summary.state = "unreadable".into();
            summary.error = Some(format!("{e:#}"));
            (summary, None)
        }
    }
}

/// A cell's scores are comparable with the base's only on the same metric and item count.
fn check_comparable(outputs: &ModelOutputs, base: &BaseSummary, dir: &Path) -> Result<()> {
    for (task, score) in &outputs.scores {
        let b = &base.tasks[task];
        if score.metric != b.metric || score.n != b.n {
            bail!(
                "{}: tasks.{task} is {} over {} items, the base's is {} over {} items: not comparable",
                dir.join("eval/results.json").display(),
                score.metric,
                score.n,
                b.metric,
                b.n
            );
        }
    }
    Ok(())
}

fn cell_label(c: &CellSummary) -> String {
    let alpha = c.alpha.map(|a| format!(" α={}", fmt_number(a))).unwrap_or_default();
    format!("{}{alpha} lr={} seed={}", c.method, fmt_lr(c.lr), c.seed)
}

/// `value` of an axis as text: strings bare, everything else as JSON.
fn axis_text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), String::from)
}

/// The point's series (label without LR) and the non-seed axes of a cell.
fn series_of(spec: &CellSpec) -> (String, BTreeMap<String, Value>) {
    let axes: BTreeMap<String, Value> = spec
        .axes
        .iter()
        .filter(|(k, _)| !SEED_AXES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut series = spec.method.clone();
    if let Some(alpha) = spec.alpha {
        series.push_str(&format!(" α={}", fmt_number(alpha)));
    }
    for (key, value) in axes.iter().filter(|(k, _)| !SHOWN_AXES.contains(&k.as_str())) {
        series.push_str(&format!(" {key}={}", axis_text(value)));
    }
    (series, axes)
}

/// Done cells grouped into points (same method, kind, LR, α and non-seed axes), in the order
/// of each point's first cell.
fn group<'a, 'b>(done: &'b [DoneCell<'a>]) -> Vec<Vec<&'b DoneCell<'a>>> {
    let mut groups: Vec<(String, Vec<&DoneCell>)> = Vec::new();
    for cell in done {
        let (series, axes) = series_of(cell.spec);
        let key = format!("{}\u{1f}{series}\u{1f}{}\u{1f}{:?}", cell.spec.kind, cell.spec.lr, axes);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(cell),
            None => groups.push((key, vec![cell])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// The paired verdicts of `task` for the base and the group's cells, or why there are none.
fn paired_task<'a>(base: &'a ModelOutputs, cells: &[&'a DoneCell], task: &str) -> Result<PairedTask<'a>, String> {
    let base_samples =
        base.samples[task].as_ref().ok_or_else(|| format!("base/eval/{task}.samples.jsonl is missing"))?;
    let mut seeds = Vec::new();
    for cell in cells {
        let samples = cell.outputs.samples[task]
            .as_ref()
            .ok_or_else(|| format!("cells/{}/eval/{task}.samples.jsonl is missing", cell.spec.id))?;
        let mismatch =
            samples.sources.iter().zip(&base_samples.sources).position(|(a, b)| a.is_some() && b.is_some() && a != b);
        if let Some(i) = mismatch {
            return Err(format!(
                "cells/{}/eval/{task}.samples.jsonl line {} is item {:?}, the base's is {:?}: not paired",
                cell.spec.id,
                i + 1,
                samples.sources[i].as_deref().unwrap_or_default(),
                base_samples.sources[i].as_deref().unwrap_or_default()
            ));
        }
        seeds.push(samples.verdicts.as_slice());
    }
    if base_samples.verdicts.is_empty() {
        return Err(format!("base/eval/{task}.samples.jsonl has no items"));
    }
    Ok(PairedTask { base: &base_samples.verdicts, seeds })
}

/// Mean, delta, seed range and bootstrap interval of the mean of `tasks`' scores.
fn score(
    cells: &[&DoneCell],
    base: &ModelOutputs,
    tasks: &[String],
    stream: &str,
    warnings: &mut Vec<String>,
) -> Score {
    let base_score = suite_score(base, tasks);
    let scores: Vec<f64> = cells.iter().map(|c| suite_score(&c.outputs, tasks)).collect();
    let deltas: Vec<f64> = scores.iter().map(|s| s - base_score).collect();
    let mean_score = mean(&scores);
    let paired: Result<Vec<PairedTask>, String> = tasks.iter().map(|t| paired_task(base, cells, t)).collect();
    let ci95 = match paired {
        Ok(paired) => {
            let (lo, hi) = paired_bootstrap(&paired, stable_hash(stream));
            Some([lo, hi])
        }
        Err(why) => {
            warnings.push(format!("{stream}: no interval: {why}"));
            None
        }
    };
    let seed_range = [
        deltas.iter().copied().fold(f64::INFINITY, f64::min),
        deltas.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ];
    Score { score: mean_score, delta: mean_score - base_score, ci95, seed_range }
}

fn mean_of_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| mean(&present))
}

/// `[min, max]` of the values present.
fn range_of_some(values: impl Iterator<Item = Option<f64>>) -> Option<[f64; 2]> {
    values.flatten().fold(None, |r, v| Some(r.map_or([v, v], |[lo, hi]: [f64; 2]| [lo.min(v), hi.max(v)])))
}

fn point(
    cells: &[&DoneCell],
    base: &ModelOutputs,
    base_summary: &BaseSummary,
    eval: &EvalSettings,
    warnings: &mut Vec<String>,
) -> Point {
    let first = cells[0].spec;
    let (series, axes) = series_of(first);
    let label = format!("{series} lr={}", fmt_lr(first.lr));
    let tasks = eval
        .domain_tasks
        .iter()
        .chain(&eval.general_tasks)
        .map(|t| {
            let task_score = score(cells, base, std::slice::from_ref(t), &format!("{label} | {t}"), warnings);
            let b = &base_summary.tasks[t];
            (t.clone(), TaskScore { metric: b.metric.clone(), score: task_score, n: b.n })
        })
        .collect();
    let code_lengths: Vec<_> = cells.iter().map(|c| c.outputs.code_lengths.unwrap_or_default()).collect();
    Point {
        domain: score(cells, base, &eval.domain_tasks, &format!("{label} | domain"), warnings),
        general: score(cells, base, &eval.general_tasks, &format!("{label} | general"), warnings),
        tasks,
        delta_l_domain: mean_of_some(code_lengths.iter().map(|c| c.domain_delta_l)),
        delta_l_general: mean_of_some(code_lengths.iter().map(|c| c.general_delta_l)),
        delta_l_domain_seed_range: range_of_some(code_lengths.iter().map(|c| c.domain_delta_l)),
        delta_l_general_seed_range: range_of_some(code_lengths.iter().map(|c| c.general_delta_l)),
        series,
        label,
        method: first.method.clone(),
        kind: first.kind.clone(),
        lr: first.lr,
        alpha: first.alpha,
        axes,
        seeds: cells.iter().map(|c| c.spec.seed).collect(),
        cells: cells.iter().map(|c| c.spec.id.clone()).collect(),
        pareto: false,
    }
}

/// A learning rate as people write it: 1e-5, 2.5e-6, 0.1 → 1e-1.
pub fn fmt_lr(lr: f64) -> String {
    if !(lr.is_finite() && lr > 0.0) {
        return lr.to_string();
    }
    let exponent = lr.log10().floor() as i32;
    let mut mantissa = lr / 10f64.powi(exponent);
    // log10 can land a hair below an exact power of ten.
    let mut exponent = exponent;
    if (mantissa - 10.0).abs() < 1e-9 {
        mantissa = 1.0;
        exponent += 1;
    }
    format!("{}e{exponent}", fmt_number((mantissa * 1000.0).round() / 1000.0))
}

/// A number with at most 3 decimals and no trailing zeros: 0.5, 0.25, 1.
pub fn fmt_number(x: f64) -> String {
    let text = format!("{x:.3}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rates_read_as_written() {
        assert_eq!(fmt_lr(1e-5), "1e-5");
        assert_eq!(fmt_lr(2e-5), "2e-5");
        assert_eq!(fmt_lr(5e-6), "5e-6");
        assert_eq!(fmt_lr(2.5e-6), "2.5e-6");
        assert_eq!(fmt_lr(1e-3), "1e-3");
        assert_eq!(fmt_lr(0.1), "1e-1");
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(fmt_number(0.5), "0.5");
        assert_eq!(fmt_number(0.25), "0.25");
        assert_eq!(fmt_number(1.0), "1");
    }
}
