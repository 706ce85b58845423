//! The evaluation harness behind `keel eval` and `keel sweep`: suites of multiple-choice tasks
//! (by log-likelihood) and generation tasks (scored from greedy answers), seeded subsets,
//! bootstrap intervals, results.json with the general score, and deltas against a baseline.

use crate::gen_file::GenFileTask;
use crate::gen_tasks::{self, GenItem, GenTask, Verdict};
use crate::mc::{evaluate, McItem, McTask};
pub use crate::per_task::PerTask;
use anyhow::{bail, ensure, Context, Result};
use keel_infer::pretrained::Pretrained;
use keel_infer::progress::Progress;
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

/// What `keel eval` (and each cell of a sweep) scores, and where it writes.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Suites and tasks, as [`expand_suites`] takes them.
    pub suites: Vec<String>,
    /// A seeded random subset of this many items per task (0: all), with exceptions by task.
    pub limit: PerTask,
    /// The subset's seed (and the bootstrap's).
    pub seed: u64,
    /// Where the benchmark data lives.
    pub data_dir: PathBuf,
    /// Directory for results.json and per-item `<task>.samples.jsonl`.
    pub out: PathBuf,
    /// Sequences per forward pass (and prompts generated together).
    pub batch_rows: usize,
    /// Token budget of generation tasks (0: each task's own), with exceptions by task.
    pub max_new_tokens: PerTask,
    /// A results.json of an earlier evaluation on the same items: record each score's change.
    pub baseline: Option<PathBuf>,
    /// The held-out fraction of the training files given as `domain:FILE` (0: none given).
    pub holdout: f64,
}

/// The general suite's tasks, whose primary metrics' mean is the general score.
pub const GENERAL_TASKS: &[&str] = &["ifeval", "gsm8k", "humaneval", "arc_easy", "arc_challenge", "boolq", "mmlu"];

/// The tasks each suite stands for. The general suite follows method.md: the paper's IFEval,
/// GSM8K and HumanEval, plus the multiple-choice benchmarks a small model can be measured on.
pub const SUITES: [(&str, &[&str]); 4] = [
    ("general", GENERAL_TASKS),
    ("domain:gsm8k", &["gsm8k"]),
    ("domain:medcalc", &["medcalc"]),
    ("domain:esci", &["esci"]),
];

/// Task names of the requested suites and tasks, each once, in order. `domain:FILE` stays as it
/// is: the held-out part of a training file, or a generation task file.
pub fn expand_suites(requested: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in requested {
        let expanded = match SUITES.iter().find(|(s, _)| s == r) {
            Some((_, tasks)) => tasks.iter().map(|t| t.to_string()).collect(),
            None => vec![r.clone()],
        };
        for t in expanded {
            if !names.contains(&t) {
                names.push(t);
            }
        }
    }
    names
}

/// A task of a suite: a task file's multiple-choice task, a built-in generation task, or a
/// task file's generation task.
enum Task {
    Mc(Box<McTask>),
    Gen(GenTask),
    GenFile(Box<GenFileTask>),
}

impl Task {
    fn name(&self) -> &str {
        match self {
            Task::Mc(t) => &t.name,
            Task::Gen(t) => t.name(),
            Task::GenFile(t) => t.name(),
        }
    }
}

/// A seeded random subset of `limit` items, in their original order (all of them for 0).
pub fn subsample<T: Clone>(items: Vec<T>, limit: usize, seed: u64) -> Vec<T> {
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

fn load_task(name: &str, holdout: f64) -> Result<Task> {
    if let Some(t) = GenTask::from_name(name) {
        return Ok(Task::Gen(t));
    }
    if let Some(file) = name.strip_prefix("domain:") {
        let path = PathBuf::from(file);
        ensure!(
            path.is_file(),
            "unknown suite \"{name}\": not a built-in domain ({}) and {file} is not a file (domain:FILE takes a \
             training data file or a generation task file)",
            SUITES.iter().filter_map(|s| s.0.strip_prefix("domain:")).collect::<Vec<_>>().join(", ")
        );
        if path.extension().is_some_and(|e| e == "toml") {
            return load_task(file, holdout);
        }
        return GenFileTask::for_training_file(&path, holdout).map(|t| Task::GenFile(Box::new(t)));
    }
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return McTask::from_toml(text, name).map(|t| Task::Mc(Box::new(t)));
    }
    let path = PathBuf::from(name);
    if !path.exists() {
        bail!(
            "unknown task \"{name}\" (suites: {}, domain:FILE; tasks: {}, gsm8k, gsm8k_8shot, ifeval, medcalc, \
             medcalc_1shot, humaneval, esci; or give a task file)",
            SUITES.map(|s| s.0).join(", "),
            BUILTIN.map(|b| b.0).join(", ")
        );
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read task file {}", path.display()))?;
    // A generation task file says how answers are judged; a multiple-choice one does not.
    let is_generation = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("metrics"));
    if is_generation {
        return GenFileTask::from_file(&path).map(|t| Task::GenFile(Box::new(t)));
    }
    McTask::from_toml(&text, &path.display().to_string()).map(|t| Task::Mc(Box::new(t)))
}

/// A multiple-choice task by name: one of the built-in task files, or the path of a task file.
pub fn load_mc_task(name: &str) -> Result<McTask> {
    match load_task(name, 0.0)? {
        Task::Mc(t) => Ok(*t),
        _ => bail!("{name} is a generation task, not a multiple-choice one"),
    }
}

/// Accuracy per subject.
fn by_subject(items: &[McItem], correct: &[bool]) -> std::collections::BTreeMap<String, f64> {
    let mut counts: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (item, &ok) in items.iter().zip(correct) {
        let e = counts.entry(item.subject.clone().unwrap_or_default()).or_default();
        e.0 += ok as usize;
        e.1 += 1;
    }
    counts.into_iter().map(|(s, (ok, n))| (s, ok as f64 / n as f64)).collect()
}

/// One metric over the scored items: per item, `passed` of `count` checks.
struct MetricScores {
    name: String,
    per_item: Vec<(u32, u32)>,
}

impl MetricScores {
    fn binary(name: &str, ok: impl Iterator<Item = bool>) -> Self {
        MetricScores { name: name.to_string(), per_item: ok.map(|x| (x as u32, 1)).collect() }
    }

    fn score(&self) -> f64 {
        ratio(self.per_item.iter())
    }

    /// 95% interval by 1000 seeded bootstrap resamples of the items.
    fn ci95(&self, seed: u64) -> (f64, f64) {
        let n = self.per_item.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let mut rng = Rng::new(seed);
        let mut scores: Vec<f64> =
            (0..1000).map(|_| ratio((0..n).map(|_| &self.per_item[rng.below(n as u64) as usize]))).collect();
        scores.sort_by(f64::total_cmp);
        (scores[25], scores[974])
    }
}

fn ratio<'a>(items: impl Iterator<Item = &'a (u32, u32)>) -> f64 {
    let (passed, count) = items.fold((0u64, 0u64), |(p, c), &(x, n)| (p + x as u64, c + n as u64));
    passed as f64 / count.max(1) as f64
}

/// The baseline's results.json, checked to be comparable (same subset of items).
pub fn read_baseline(path: &std::path::Path, limit: &PerTask, seed: u64) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the baseline {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a keel results.json", path.display()))?;
    if !v["tasks"].is_object() {
        bail!("{} has no \"tasks\" object: is it a keel eval results.json?", path.display());
    }
    let their_limit = serde_json::from_value::<PerTask>(v["limit"].clone()).ok();
    let their_seed = v["seed"].as_u64();
    if their_limit.as_ref() != Some(limit) || their_seed != Some(seed) {
        bail!(
            "{} was scored with --limit {} --seed {}, these with --limit {limit} --seed {seed}: different items, so the deltas \
             would mean nothing. Rerun with the baseline's --limit and --seed.",
            path.display(), their_limit.map_or("?".into(), |x| x.to_string()), their_seed.map_or("?".into(), |x| x.to_string())
        );
    }
    Ok(v)
}

/// A task's verdicts: per item, a JSON line for the samples file; per metric, each item's
/// verdict.
struct TaskScores {
    name: String,
    primary: String,
    samples: Vec<serde_json::Value>,
    metrics: Vec<MetricScores>,
    subject_scores: Option<std::collections::BTreeMap<String, f64>>,
    generated_tokens: Option<usize>,
    /// The code length of the references (training files only): (nats per token, tokens).
    code_length: Option<(f64, usize)>,
}

fn score_mc(pre: &Pretrained, task: &McTask, opts: &EvalOptions) -> Result<TaskScores> {
    let all = task.items(&opts.data_dir)?;
    let total = all.len();
    let items = subsample(all, opts.limit.of(&task.name), opts.seed);
    eprintln!("{}: scoring {} of {total} items", task.name, items.len());
    let mut progress = Progress::new(&task.name, 0);
    let (results, _, _) = evaluate(&pre.model, &pre.tokenizer, task, &items, opts.batch_rows, &mut progress)?;
    let samples = items
        .iter()
        .zip(&results)
        .map(|(item, r)| {
            json!({"source": r.source, "contexts": item.contexts, "continuations": item.continuations, "gold": r.gold,
                "loglikelihoods": r.loglikelihoods, "is_greedy": r.is_greedy, "pred_acc": r.pred_acc,
                "pred_acc_norm": r.pred_acc_norm, "acc": r.pred_acc == r.gold, "acc_norm": r.pred_acc_norm == r.gold})
        })
        .collect();
    let acc: Vec<bool> = results.iter().map(|r| r.pred_acc == r.gold).collect();
    let subject_scores = task.subjects.is_some().then(|| by_subject(&items, &acc));
    let metrics = vec![
        MetricScores::binary("acc", acc.into_iter()),
        MetricScores::binary("acc_norm", results.iter().map(|r| r.pred_acc_norm == r.gold)),
    ];
    Ok(TaskScores {
        name: task.name.clone(),
        primary: "acc".into(),
        samples,
        metrics,
        subject_scores,
        generated_tokens: None,
        code_length: None,
    })
}

/// A generation task of either kind.
#[derive(Clone, Copy)]
enum Generation<'a> {
    Builtin(GenTask),
    File(&'a GenFileTask),
}

impl Generation<'_> {
    fn name(&self) -> &str {
        match self {
            Generation::Builtin(t) => t.name(),
            Generation::File(t) => t.name(),
        }
    }

    fn score(&self, item: &GenItem, response: &str) -> Result<Vec<Verdict>> {
        match self {
            Generation::Builtin(t) => t.score(item, response),
            Generation::File(t) => Ok(t.score(item, response)),
        }
    }
}

fn score_gen(pre: &Pretrained, task: Generation, opts: &EvalOptions) -> Result<TaskScores> {
    let name = task.name().to_string();
    let all = match task {
        Generation::Builtin(t) => t.items(&opts.data_dir)?,
        Generation::File(t) => t.items(&opts.data_dir)?,
    };
    let total = all.len();
    let items = subsample(all, opts.limit.of(&name), opts.seed);
    eprintln!("{name}: answering {} of {total} questions", items.len());
    let max_new_tokens = opts.max_new_tokens.of(&name);
    let generations = match task {
        Generation::Builtin(t) => gen_tasks::run(pre, t, &items, opts.batch_rows, max_new_tokens)?,
        Generation::File(t) => {
            let gen_opts =
                keel_infer::generate::GenOptions { batch: opts.batch_rows.max(1), ..t.options(max_new_tokens) };
            gen_tasks::generate_answers(pre, &name, &items, t.is_chat(), &gen_opts)?
        }
    };
    let generated_tokens = Some(generations.iter().map(|g| g.ids.len()).sum::<usize>());
    let mut metrics: Vec<MetricScores> = Vec::new();
    let mut samples = Vec::new();
    for (item, generation) in items.iter().zip(generations) {
        let output = generation.text;
        let mut sample =
            json!({"source": item.source, "prompt": item.prompt, "output": output, "reference": item.reference});
        for (k, v) in task.score(item, &output)?.into_iter().enumerate() {
            if !v.extracted.is_null() {
                sample[format!("{}_extracted", v.metric)] = v.extracted;
            }
            sample[&v.metric] = if v.count == 1 { json!(v.passed == 1) } else { json!([v.passed, v.count]) };
            if metrics.len() <= k {
                metrics.push(MetricScores { name: v.metric.clone(), per_item: Vec::new() });
            }
            metrics[k].per_item.push((v.passed, v.count));
        }
        samples.push(sample);
    }
    let (primary, code_length) = match task {
        Generation::Builtin(t) => (t.primary_metric().to_string(), None),
        Generation::File(t) => {
            let code_length = match t.spec.data_format {
                Some(_) => Some(reference_code_length(pre, &items)?),
                None => None,
            };
            (t.primary_metric().to_string(), code_length)
        }
    };
    Ok(TaskScores { name, primary, samples, metrics, subject_scores: None, generated_tokens, code_length })
}

/// The code length of the reference answers of conversation items (the paper's L on the
/// domain; its change against a baseline is ΔL).
fn reference_code_length(pre: &Pretrained, items: &[GenItem]) -> Result<(f64, usize)> {
    let examples: Vec<keel_data::dataset::Example> = items
        .iter()
        .map(|it| {
            let mut messages = it.shots.clone();
            messages.push(keel_data::chat::Message::new("user", &it.prompt));
            messages.push(keel_data::chat::Message::new("assistant", it.reference.as_str().unwrap_or_default()));
            keel_data::dataset::Example { messages, source: it.source.clone() }
        })
        .collect();
    let tokenized = crate::codelength::tokenize(pre, &examples)?;
    let l = crate::codelength::code_length(&pre.model, &tokenized)?;
    Ok((l.code_length, l.n_tokens))
}

/// Writes the task's samples file and returns its results.json entry (printing its line).
fn task_entry(scores: TaskScores, secs: f64, opts: &EvalOptions) -> Result<serde_json::Value> {
    let TaskScores { name, primary, samples, metrics, subject_scores, generated_tokens, code_length } = scores;
    let path = opts.out.join(format!("{name}.samples.jsonl"));
    let mut f = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    for s in &samples {
        writeln!(f, "{s}")?;
    }
    let mut entry = json!({"n": samples.len(), "seconds": secs, "primary_metric": primary});
    if let Some(tokens) = generated_tokens {
        entry["generated_tokens"] = json!(tokens);
        entry["generated_tokens_per_s"] = json!(tokens as f64 / secs);
    }
    let mut line = format!("{name:14}");
    for m in &metrics {
        let (score, ci) = (m.score(), m.ci95(opts.seed));
        entry[&m.name] = json!(score);
        entry[format!("{}_ci95", m.name)] = json!([ci.0, ci.1]);
        line.push_str(&format!(" {} {score:.4} [{:.4}, {:.4}]", m.name, ci.0, ci.1));
    }
    if let Some((nats, tokens)) = code_length {
        entry["code_length"] = json!(nats);
        entry["code_length_tokens"] = json!(tokens);
        line.push_str(&format!(" code_length {nats:.4} ({tokens} tokens)"));
    }
    if let Some(per_subject) = subject_scores {
        // acc above is the micro average (over items); the macro average weighs subjects equally.
        let macro_acc = per_subject.values().sum::<f64>() / per_subject.len().max(1) as f64;
        entry["acc_macro"] = json!(macro_acc);
        entry["acc_by_subject"] = json!(per_subject);
        line.push_str(&format!(" acc_macro {macro_acc:.4} ({} subjects)", per_subject.len()));
    }
    println!("{line}  n={}  {secs:.1} s", samples.len());
    Ok(entry)
}

/// Scores `pre` on the requested suites, writes `results.json` and the samples files into
/// `opts.out`, and returns the results. The members of `model` (its path, say) describe the
/// model at the top of results.json.
pub fn run(pre: &Pretrained, model: serde_json::Value, opts: &EvalOptions) -> Result<serde_json::Value> {
    let tasks: Vec<Task> =
        expand_suites(&opts.suites).iter().map(|t| load_task(t, opts.holdout)).collect::<Result<_>>()?;
    let names: Vec<String> = tasks.iter().map(|t| t.name().to_string()).collect();
    if let Some(twice) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        bail!("two tasks are named {}: results are kept by task name, so rename one", twice.1);
    }
    opts.limit.check_tasks(&names, "the item limit")?;
    opts.max_new_tokens.check_tasks(&names, "the generation budget")?;
    let baseline = opts.baseline.as_deref().map(|p| read_baseline(p, &opts.limit, opts.seed)).transpose()?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut summary = serde_json::Map::new();
    // (task, primary metric's score) of the general suite's tasks, for their mean.
    let mut general: Vec<(String, f64)> = Vec::new();
    for task in &tasks {
        let started = std::time::Instant::now();
        let scores = match task {
            Task::Mc(task) => score_mc(pre, task, opts)?,
            Task::Gen(task) => score_gen(pre, Generation::Builtin(*task), opts)?,
            Task::GenFile(task) => score_gen(pre, Generation::File(task), opts)?,
        };
        let (name, primary) = (scores.name.clone(), scores.primary.clone());
        let entry = task_entry(scores, started.elapsed().as_secs_f64(), opts)?;
        if GENERAL_TASKS.contains(&name.as_str()) {
            general.push((name.clone(), entry[&primary].as_f64().unwrap_or(0.0)));
        }
        summary.insert(name, entry);
    }
    let mut results = model;
    let version = env!("CARGO_PKG_VERSION");
    let settings = [
        ("limit", opts.limit.to_json()),
        ("seed", json!(opts.seed)),
        ("max_new_tokens", opts.max_new_tokens.to_json()),
        ("keel_version", json!(version)),
    ];
    for (k, v) in settings {
        results[k] = v;
    }
    results["tasks"] = json!(summary);
    if !general.is_empty() {
        let mean = general.iter().map(|g| g.1).sum::<f64>() / general.len() as f64;
        let tasks: Vec<&str> = general.iter().map(|g| g.0.as_str()).collect();
        println!("general score {mean:.4}: mean of each task's primary metric over {}", tasks.join(", "));
        results["general_score"] = json!({"mean": mean, "tasks": tasks});
    }
    if let (Some(base), Some(path)) = (&baseline, &opts.baseline) {
        results["baseline"] = json!({"path": path, "deltas": deltas(&results, base)});
    }
    let path = opts.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(results)
}

/// Each score's change against the baseline (tasks and metrics both have), printed and returned
/// as {task: {metric: delta}}.
fn deltas(ours: &serde_json::Value, base: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    println!("change against the baseline (this − baseline):");
    let ours_tasks = ours["tasks"].as_object().into_iter().flatten();
    for (task, entry) in ours_tasks {
        let Some(theirs) = base["tasks"].get(task) else {
            println!("  {task:14} not in the baseline");
            continue;
        };
        let mut line = format!("  {task:14}");
        let mut d = serde_json::Map::new();
        for (metric, value) in entry.as_object().into_iter().flatten() {
            let skip = ["n", "seconds", "generated_tokens", "generated_tokens_per_s", "code_length_tokens"]
                .contains(&metric.as_str())
                || metric.ends_with("_ci95");
            if let (false, Some(x), Some(y)) = (skip, value.as_f64(), theirs[metric].as_f64()) {
                line.push_str(&format!(" {metric} {:+.4}", x - y));
                d.insert(metric.clone(), json!(x - y));
            }
        }
        println!("{line}");
        out.insert(task.clone(), serde_json::Value::Object(d));
    }
    if let (Some(x), Some(y)) = (ours["general_score"]["mean"].as_f64(), base["general_score"]["mean"].as_f64()) {
        println!("  general score {:+.4}", x - y);
        out.insert("general_score".into(), json!(x - y));
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_expand_to_their_tasks_once_each_in_order() {
        let asked: Vec<String> = ["domain:medcalc", "gsm8k", "general", "mmlu_5shot"].map(String::from).to_vec();
        assert_eq!(
            expand_suites(&asked),
            ["medcalc", "gsm8k", "ifeval", "humaneval", "arc_easy", "arc_challenge", "boolq", "mmlu", "mmlu_5shot"]
        );
    }

    #[test]
    fn instruction_level_scores_pool_checks_across_items() {
        // 1 of 1 and 1 of 3 instructions followed: 2 of 4 checks, not the mean of 1 and 1/3.
        let m = MetricScores { name: "inst".into(), per_item: vec![(1, 1), (1, 3)] };
        assert_eq!(m.score(), 0.5);
        let (lo, hi) = m.ci95(0);
        assert!(lo <= 0.5 && 0.5 <= hi && lo >= 0.25 && hi <= 1.0);
    }
}
