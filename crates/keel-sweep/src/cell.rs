//! One unit of a sweep, in its own process (`keel sweep run-cell`): the base model's
//! evaluation, a train cell (train, evaluate, measure ΔL), or a merge cell (WiSE-FT, evaluate,
//! measure ΔL).

use crate::layout::{now_utc, read_status, write_json, State, Status, SweepDir};
use crate::spec::{AnalyzeSection, CellInfo, EvalSection};
use anyhow::{ensure, Context, Result};
use keel_eval::codelength::{
    code_length, domain_examples, general_examples, read_general_cache, tokenize, written_general_examples, CodeLength,
};
use keel_eval::harness::{self, EvalOptions};
use keel_infer::pretrained::Pretrained;
use keel_train::config::{ModelSection, RunConfig};
use keel_train::run::{train, RunOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a unit reads from sweep.json.
struct Shared {
    dir: SweepDir,
    eval: EvalSection,
    analyze: AnalyzeSection,
    /// `settings.base`: the base model and the default domain data.
    base: Value,
    /// Whether done train cells keep run/final.
    keep_weights: bool,
}

fn read_context(dir: &SweepDir) -> Result<Shared> {
    let m = dir.manifest()?;
    let s = &m["settings"];
    let bad = || format!("{}: \"settings\" is malformed", dir.root.join("sweep.json").display());
    let workdir = m["workdir"].as_str().with_context(bad)?;
    // Relative paths in the configs mean what they meant where the sweep was started.
    std::env::set_current_dir(workdir)
        .with_context(|| format!("cannot enter the sweep's working directory {workdir}"))?;
    Ok(Shared {
        dir: dir.clone(),
        eval: serde_json::from_value(s["eval"].clone()).with_context(bad)?,
        analyze: serde_json::from_value(s["analyze"].clone()).with_context(bad)?,
        base: s["base"].clone(),
        keep_weights: m["keep_weights"].as_bool().unwrap_or(true),
    })
}

/// Runs the base (`index` None) or cell `index` of the sweep in `root` with `threads` threads,
/// recording its state in status.json. A finished unit is left alone.
pub fn run_unit(root: &Path, index: Option<usize>, threads: usize) -> Result<()> {
    let dir = SweepDir::new(&std::path::absolute(root)?);
    let info = match index {
        None => None,
        Some(i) => {
            let cells = dir.cells()?;
            let n = cells.len();
            Some(
                cells
                    .into_iter()
                    .nth(i)
                    .with_context(|| format!("--index {i}: the sweep has {n} cells (0-{})", n.max(1) - 1))?,
            )
        }
    };
    let unit = dir.unit(info.as_ref().map(|c| c.id.as_str()));
    let previous = read_status(&unit);
    if previous.state == State::Done {
        eprintln!("{} is done already", unit.display());
        return Ok(());
    }
    let ctx = read_context(&dir)?;
    let mut status = Status { state: State::Training, started: Some(now_utc()), ..Status::default() };
    let result = match &info {
        None => run_base(&ctx, threads, &mut status, &unit),
        Some(c) if c.kind == "merge" => run_merge(&ctx, c, threads, &mut status, &unit),
        Some(c) => run_train(&ctx, c, threads, previous.state == State::Evaluating, &mut status, &unit),
    };
    status.finished = Some(now_utc());
    match result {
        Ok(()) => {
            status.state = State::Done;
            write_json(&unit.join("status.json"), &status)
        }
        Err(e) => {
            status.state = State::Failed;
            status.error = Some(format!("{e:#}"));
            write_json(&unit.join("status.json"), &status)?;
            Err(e)
        }
    }
}

fn set_state(unit: &Path, status: &mut Status, state: State) -> Result<()> {
    status.state = state;
    write_json(&unit.join("status.json"), status)
}

fn init_threads(threads: usize) -> Result<()> {
    keel_kernels::parallel::init_threads(threads).map_err(anyhow::Error::msg)
}

fn run_base(ctx: &Shared, threads: usize, status: &mut Status, unit: &Path) -> Result<()> {
    init_threads(threads)?;
    set_state(unit, status, State::Evaluating)?;
    let section: ModelSection =
        serde_json::from_value(ctx.base["model"].clone()).context("sweep.json: settings.base.model")?;
    let (base, path) = (section.load()?, section.path);
    evaluate(ctx, &base, json!({"model": path, "cell": "base"}), status, unit)?;
    let started = Instant::now();
    let lengths = measure(ctx, &base, Some(&base))?;
    let analysis = analysis(&lengths, &lengths);
    write_json(&unit.join("analyze.json"), &analysis)?;
    status.seconds.insert("analyze".into(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The base must be evaluated before any cell: it is the origin of their ΔL.
fn require_done(unit: &Path, what: &str) -> Result<()> {
    let s = read_status(unit);
    ensure!(
        s.state == State::Done,
        "{what} ({}) is {}, not done{}; run `keel sweep run` again once it is",
        unit.display(),
        s.state.name(),
        s.error.map(|e| format!(": {e}")).unwrap_or_default()
    );
    Ok(())
}

fn run_train(
    ctx: &Shared,
    cell: &CellInfo,
    threads: usize,
    trained: bool,
    status: &mut Status,
    unit: &Path,
) -> Result<()> {
    require_done(&ctx.dir.base(), "the base model's evaluation")?;
    let config_path = unit.join("config.toml");
    let mut config = RunConfig::load(&config_path, &[])?;
    config.output.dir = unit.join("run");
    let checkpoints = keel_train::checkpoint::list(&config.output.dir)?;
    // A checkpoint resumes only under the thread count that made it (threads set the bits).
    config.train.threads =
        if checkpoints.is_empty() { threads } else { checkpoint_threads(&config.output.dir).unwrap_or(threads) };
    let final_dir = config.output.dir.join("final");
    if !(trained && final_dir.join("config.json").exists()) {
        set_state(unit, status, State::Training)?;
        let started = Instant::now();
        train(&config, &RunOptions { resume: !checkpoints.is_empty(), progress: true })?;
        status.seconds.insert("train".into(), started.elapsed().as_secs_f64());
    } else {
        init_threads(config.train.threads)?;
    }
    set_state(unit, status, State::Evaluating)?;
    let model = Pretrained::load(&final_dir)?;
    finish(ctx, cell, &model, status, unit)?;
    // A finished cell is never trained again: its checkpoints (weights and optimizer moments,
    // three times the model) only fill the disk. run/final stays.
    for c in keel_train::checkpoint::list(&config.output.dir)? {
        std::fs::remove_dir_all(&c).with_context(|| format!("cannot remove {}", c.display()))?;
    }
    // With keep_weights = false, run/final goes too, unless a merge cell still needs it.
    let merged = ctx.dir.cells()?.iter().any(|c| c.from.as_deref() == Some(cell.id.as_str()));
    if !ctx.keep_weights && !merged {
        std::fs::remove_dir_all(&final_dir).with_context(|| format!("cannot remove {}", final_dir.display()))?;
    }
    Ok(())
}

/// train.threads of the run whose checkpoints are in `run_dir`.
fn checkpoint_threads(run_dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(run_dir.join("config.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["config"]["train"]["threads"].as_u64().map(|t| t as usize)
}

fn run_merge(ctx: &Shared, cell: &CellInfo, threads: usize, status: &mut Status, unit: &Path) -> Result<()> {
    require_done(&ctx.dir.base(), "the base model's evaluation")?;
    let from = cell.from.as_deref().context("a merge cell without \"from\" in sweep.json")?;
    let alpha = cell.alpha.context("a merge cell without \"alpha\" in sweep.json")?;
    let source = ctx.dir.cell(from);
    require_done(&source, "the cell it merges")?;
    if source.join("run/final/config.json").exists() {
        init_threads(threads)?;
    } else {
        retrain_source(&source, status, unit)?;
    }
    let started = Instant::now();
    let base_config = RunConfig::load(&source.join("config.toml"), &[])?;
    let base = base_config.model.load()?;
    let mut tuned = Pretrained::load(&source.join("run/final"))?;
    let merged = keel_train::merge::average(&base.model, &tuned.model, alpha)
        .with_context(|| format!("merging cell {from} with the base at α = {alpha}"))?;
    tuned.model.params = merged.params;
    status.seconds.insert("merge".into(), started.elapsed().as_secs_f64());
    set_state(unit, status, State::Evaluating)?;
    finish(ctx, cell, &tuned, status, unit)
}

/// Trains a merge's source cell again when its weights are gone (it finished under
/// `keep_weights = false` before a `wise_ft` entry named it), into this cell's directory and then
/// to the source's `run/final`. Training is deterministic for a seed, thread count and set of
/// BLAS kernels, so this remakes the same weights, and the source's recorded losses check it. A
/// cell trained under other kernels (before keel picked OpenBLAS's kernels itself) ends near but not on
/// its record: within `RETRAIN_TOLERANCE` per step the retrained model is merged and the log says
/// by how much it differs; further off, it is another run and the merge fails.
fn retrain_source(source: &Path, status: &mut Status, unit: &Path) -> Result<()> {
    let want = step_losses(&source.join("run/metrics.jsonl")).with_context(|| {
        format!("the merged cell's weights are gone and its training record with them ({})", source.display())
    })?;
    let mut config = RunConfig::load(&source.join("config.toml"), &[])?;
    config.output.dir = unit.join("source-run");
    // The thread count the source trained with: threads set the bits.
    config.train.threads = checkpoint_threads(&source.join("run")).unwrap_or(config.train.threads);
    let resume = !keel_train::checkpoint::list(&config.output.dir)?.is_empty();
    set_state(unit, status, State::Training)?;
    eprintln!(
        "{}: its weights were not kept (keep_weights = false); training it again with {} threads",
        source.display(),
        config.train.threads
    );
    let started = Instant::now();
    train(&config, &RunOptions { resume, progress: true })?;
    status.seconds.insert("retrain_source".into(), started.elapsed().as_secs_f64());
    let got = step_losses(&config.output.dir.join("metrics.jsonl"))?;
    let steps: Vec<u64> = want.iter().map(|w| w.0).collect();
    let same_steps = steps == got.iter().map(|g| g.0).collect::<Vec<_>>();
    let rel = |got: f64, want: f64| (got - want).abs() / want.abs().max(1e-12);
    let worst = want.iter().zip(&got).map(|(w, g)| rel(g.1, w.1)).fold(0.0, f64::max);
    if !same_steps || worst.is_nan() || worst > RETRAIN_TOLERANCE {
        let _ = std::fs::remove_dir_all(&config.output.dir);
        anyhow::bail!(
            "training {} again did not repeat its run: {} (steps {:?}, losses within {:.0}% per step needed); \
             another keel version or changed data trained it. Set keep_weights = true and run that cell again under a new \
             name, or merge a cell that kept its weights",
            source.display(),
            if same_steps {
                format!("a step's loss differs by {:.1}%", 100.0 * worst)
            } else {
                "other steps were logged".into()
            },
            steps,
            100.0 * RETRAIN_TOLERANCE
        );
    }
    if worst <= 1e-3 {
        eprintln!("{}: trained again to its recorded losses (within {worst:.1e} per step)", source.display());
    } else {
        eprintln!(
            "warning: {}: trained again, its losses differ from the record by up to {:.2}% per step (last step: {:.4} \
             against {:.4}): the BLAS kernels or the summation order changed since it ran; the merge uses the \
             retrained weights",
            source.display(),
            100.0 * worst,
            got.last().map_or(f64::NAN, |g| g.1),
            want.last().map_or(f64::NAN, |w| w.1)
        );
    }
    let final_dir = source.join("run/final");
    // Another merge of the same source may have restored the weights meanwhile; either copy is
    // the same model.
    if !final_dir.join("config.json").exists() {
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::rename(config.output.dir.join("final"), &final_dir)
            .with_context(|| format!("cannot move the retrained weights to {}", final_dir.display()))?;
    }
    std::fs::remove_dir_all(&config.output.dir)
        .with_context(|| format!("cannot remove {}", config.output.dir.display()))?;
    Ok(())
}

/// How far a retrained source's loss may stray from its record at any step, relative.
const RETRAIN_TOLERANCE: f64 = 0.05;

/// The loss logged at each optimizer step of a metrics.jsonl, in step order; a step logged twice
/// (a run resumed from a checkpoint before it) keeps its last line.
fn step_losses(metrics: &Path) -> Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("cannot read {}", metrics.display()))?;
    let mut losses = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a JSON object", metrics.display(), i + 1))?;
        if let (Some(step), Some(loss)) = (v["step"].as_u64(), v["loss"].as_f64()) {
            losses.insert(step, loss);
        }
    }
    ensure!(!losses.is_empty(), "{} logs no step with a loss", metrics.display());
    Ok(losses.into_iter().collect())
}

/// Scores a cell's model and measures its ΔL against the base.
fn finish(ctx: &Shared, cell: &CellInfo, model: &Pretrained, status: &mut Status, unit: &Path) -> Result<()> {
    evaluate(ctx, model, json!({"cell": cell.id, "method": cell.method}), status, unit)?;
    let started = Instant::now();
    let base_path = ctx.dir.base().join("analyze.json");
    let text = std::fs::read_to_string(&base_path).with_context(|| format!("cannot read {}", base_path.display()))?;
    let base: Value = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", base_path.display()))?;
    let base_lengths = ["domain", "general"].map(|k| serde_json::from_value::<CodeLength>(base[k].clone()).ok());
    let lengths = measure(ctx, model, None)?;
    ensure!(lengths[1].is_none() || base_lengths[1].is_some(), "{} has no general code length", base_path.display());
    write_json(&unit.join("analyze.json"), &analysis(&lengths, &base_lengths))?;
    status.seconds.insert("analyze".into(), started.elapsed().as_secs_f64());
    Ok(())
}

fn evaluate(ctx: &Shared, model: &Pretrained, describe: Value, status: &mut Status, unit: &Path) -> Result<()> {
    let e = &ctx.eval;
    let opts = EvalOptions {
        suites: e.domain.iter().chain(&e.general).cloned().collect(),
        limit: e.limit.clone(),
        seed: e.seed,
        data_dir: e.data_dir.clone(),
        out: unit.join("eval"),
        batch_rows: e.batch_rows,
        max_new_tokens: e.max_new_tokens.clone(),
        baseline: None,
        // A domain:FILE suite scores what the base run config held out of that file.
        holdout: ctx.base["data"]["holdout"].as_f64().unwrap_or(0.0),
    };
    let started = Instant::now();
    harness::run(model, describe, &opts)?;
    status.seconds.insert("eval".into(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Code lengths of the domain and (when asked) general responses under `model`. The general
/// responses are `general_data`'s, or the base's own answers, generated by the base unit (`base`
/// given) into base/general_responses.json and read from there by the cells.
fn measure(ctx: &Shared, model: &Pretrained, base: Option<&Pretrained>) -> Result<[Option<CodeLength>; 2]> {
    let a = &ctx.analyze;
    let b = &ctx.base["data"];
    let data = a.data.clone().or_else(|| b["path"].as_str().map(PathBuf::from)).context("no domain data")?;
    let format = match a.format {
        Some(f) => f,
        None => serde_json::from_value(b["format"].clone()).context("sweep.json: settings.base.data.format")?,
    };
    let target = match a.target {
        Some(t) => t,
        None => serde_json::from_value(b["target"].clone()).context("sweep.json: settings.base.data.target")?,
    };
    let examples = domain_examples(&data, format, target, a.domain_limit)
        .with_context(|| format!("the domain responses of [analyze] ({})", data.display()))?;
    let domain = code_length(&model.model, &tokenize(model, &examples)?)?;
    let general = if let Some(path) = &a.general_data {
        let examples = written_general_examples(path, a.general_limit)
            .with_context(|| format!("the general responses of [analyze] general_data ({})", path.display()))?;
        Some(code_length(&model.model, &tokenize(model, &examples)?)?)
    } else if a.general_limit > 0 {
        let cache = ctx.dir.base().join("general_responses.json");
        let examples = match base {
            Some(b) => general_examples(b, a.general_limit, &ctx.eval.data_dir, &cache, a.max_new_tokens)?,
            None => read_general_cache(&cache, a.general_limit)?
                .with_context(|| format!("{} is missing: the base's evaluation writes it", cache.display()))?,
        };
        Some(code_length(&model.model, &tokenize(model, &examples)?)?)
    } else {
        None
    };
    if let Some(g) = &general {
        eprintln!("general code length {:.4} nats/token over {} tokens", g.code_length, g.n_tokens);
    }
    eprintln!("domain code length {:.4} nats/token over {} tokens", domain.code_length, domain.n_tokens);
    Ok([Some(domain), general])
}

/// analyze.json: each measured code length and its ΔL against the base's.
fn analysis(lengths: &[Option<CodeLength>; 2], base: &[Option<CodeLength>; 2]) -> Value {
    let mut out = json!({});
    for (k, (l, b)) in ["domain", "general"].iter().zip(lengths.iter().zip(base)) {
        if let (Some(l), Some(b)) = (l, b) {
            out[*k] =
                json!({"code_length": l.code_length, "delta_l": l.code_length - b.code_length, "n_tokens": l.n_tokens});
        }
    }
    out
}
