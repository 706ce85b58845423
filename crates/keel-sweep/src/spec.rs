//! The sweep file: parsed strictly, then resolved into its cells.

use anyhow::{bail, ensure, Context, Result};
use keel_data::dataset::{Format, Target};
use keel_eval::gen_tasks::GenTask;
use keel_eval::harness::{expand_suites, load_mc_task, PerTask};
use keel_train::config::RunConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[eval]`: what the base and every cell are scored on (the same items for all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Domain suites and tasks (`domain:gsm8k`, `gsm8k`, ...).
    #[serde(default)]
    pub domain: Vec<String>,
    /// General suites and tasks (`general`, `arc_easy`, ...).
    #[serde(default)]
    pub general: Vec<String>,
    /// Items per task, a seeded subset (0: all): a number, or `{ default = 100, ifeval = 24 }`.
    #[serde(default)]
    pub limit: PerTask,
    /// The subset's seed.
    #[serde(default)]
    pub seed: u64,
    /// Sequences per forward pass.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Token budget of generation tasks (0: each task's own), a number or a table by task.
    #[serde(default)]
    pub max_new_tokens: PerTask,
    /// Where the benchmark data lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

/// `[analyze]`: the code length ΔL of each cell against the base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeSection {
    /// Domain responses measured: the first N of the domain data (0: all of them).
    #[serde(default = "default_domain_limit")]
    pub domain_limit: usize,
    /// The domain data (default: the base config's `data.path`, `data.format`, `data.target`).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Its format (default: the base config's `data.format`).
    #[serde(default)]
    pub format: Option<Format>,
    /// Its target (default: the base config's `data.target`).
    #[serde(default)]
    pub target: Option<Target>,
    /// General responses: the base model's greedy answers to this many IFEval prompts (0: no
    /// general ΔL); with `general_data`, the first this many of its responses (0: all of them).
    #[serde(default)]
    pub general_limit: usize,
    /// General responses written by people: a data file in any training format, whose assistant
    /// turns are measured instead of the base model's own answers (which favour a model that
    /// sharpens on its own habits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_data: Option<PathBuf>,
    /// Token budget of each general response.
    #[serde(default = "default_analyze_tokens")]
    pub max_new_tokens: usize,
}

impl Default for AnalyzeSection {
    fn default() -> Self {
        AnalyzeSection {
            domain_limit: default_domain_limit(),
            data: None,
            format: None,
            target: None,
            general_limit: 0,
            general_data: None,
            max_new_tokens: default_analyze_tokens(),
        }
    }
}

fn default_batch_rows() -> usize {
    8
}
fn default_data_dir() -> PathBuf {
    keel_data::default_data_dir()
}
fn default_domain_limit() -> usize {
    50
}
fn default_analyze_tokens() -> usize {
    128
}

/// `wise_ft = { from = "sft", alpha = [...] }`: merges each finished cell of one method with the
/// base at each α, training nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WiseFt {
    /// The `[[methods]]` name whose cells are merged.
    pub from: String,
    /// Weights of the tuned model.
    pub alpha: Vec<f64>,
    /// `axes = { "train.lr" = [1e-3] }`: merge only the source cells at these axis values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axes: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    base: toml::Value,
    #[serde(default)]
    axes: toml::Table,
    #[serde(default)]
    methods: Vec<toml::Table>,
    wise_ft: Option<WiseFt>,
    #[serde(default = "keep_by_default")]
    keep_weights: bool,
    eval: EvalSection,
    #[serde(default)]
    analyze: AnalyzeSection,
}

fn keep_by_default() -> bool {
    true
}

/// A cell: one `keel train` run, or one post-hoc merge (cell.json in the sweep directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellInfo {
    /// Fingerprint of the resolved configuration (16 hex digits); the directory name.
    pub id: String,
    /// Position in sweep.json's cells (the Slurm array index).
    pub index: usize,
    /// The `[[methods]]` name, or `wise_ft`.
    pub method: String,
    /// `train` or `merge`.
    pub kind: String,
    /// The effective peak learning rate (for a merge, its source's).
    pub lr: f64,
    /// The training seed (for a merge, its source's).
    pub seed: u64,
    /// The crossed values that made the cell, by config key.
    pub axes: BTreeMap<String, Value>,
    /// The method's own overrides.
    pub overrides: BTreeMap<String, Value>,
    /// For a merge: the id of the train cell merged with the base.
    pub from: Option<String>,
    /// For a merge: the tuned model's weight.
    pub alpha: Option<f64>,
}

impl CellInfo {
    /// A short human label: `talr lr=1e-5 seed=0` (and `α=0.5` for merges).
    pub fn label(&self) -> String {
        let mut s = format!("{} lr={:e} seed={}", self.method, self.lr, self.seed);
        for (k, v) in &self.axes {
            if k != "train.lr" && k != "train.seed" {
                s.push_str(&format!(" {}={v}", k.rsplit('.').next().unwrap_or(k)));
            }
        }
        if let Some(a) = self.alpha {
            s.push_str(&format!(" α={a}"));
        }
        s
    }
}

/// A resolved cell: what it is and, for a train cell, its run config.
#[derive(Clone, Debug)]
pub struct Cell {
    /// cell.json.
    pub info: CellInfo,
    /// The `keel train` config (None for merges).
    pub config: Option<RunConfig>,
}

/// A resolved sweep file.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The sweep file.
    pub file: PathBuf,
    /// Its bytes, copied into the sweep directory.
    pub text: String,
    /// The resolved base run config.
    pub base: RunConfig,
    /// `keep_weights`: whether a done train cell keeps `run/final` (a merge's source always does).
    pub keep_weights: bool,
    /// `[eval]`.
    pub eval: EvalSection,
    /// `[analyze]`.
    pub analyze: AnalyzeSection,
    /// Train cells first (methods × axes), then merges.
    pub cells: Vec<Cell>,
}

/// Run-config keys that do not change what a run computes, left out of cell ids: where it
/// writes, and the thread budget (the sweep's `--threads` decides it).
const NOT_IDENTITY: [&str; 2] = ["output", "train.threads"];

impl Sweep {
    /// Reads and resolves a sweep file; errors name the file and the key.
    pub fn load(file: &Path) -> Result<Sweep> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read the sweep file {}", file.display()))?;
        let name = file.display().to_string();
        let raw: SweepFile = toml::from_str(&text).with_context(|| format!("{name} is not a valid sweep file"))?;
        let base = resolve_base(&raw.base, &name)?;
        let tree = serde_json::to_value(&base)?;
        let axes = flatten_axes(&raw.axes, &tree, &name)?;
        let methods = read_methods(&raw.methods, &tree, &axes, &name)?;
        check_eval(&raw.eval, &name)?;
        // Read now, not after the base's evaluation, where a typo would cost its whole run.
        if let Some(path) = &raw.analyze.general_data {
            Format::detect(path).with_context(|| format!("{name}: analyze.general_data"))?;
        }
        let mut cells = Vec::new();
        for m in &methods {
            let (method, overrides) = (&m.name, &m.overrides);
            for point in cartesian(&axes).into_iter().filter(|p| m.runs_at(p)) {
                let mut t = tree.clone();
                for (k, v) in point.iter().chain(overrides.iter()) {
                    set_key(&mut t, k, v.clone());
                }
                let what = format!("{name}: method \"{method}\" at {}", json!(point));
                let config = RunConfig::from_tree(t.clone()).with_context(|| what.clone())?;
                let id = cell_id(&json!({"kind": "train", "method": method, "config": identity(&t)}));
                let info = CellInfo {
                    id,
                    index: cells.len(),
                    method: method.clone(),
                    kind: "train".into(),
                    lr: config.peak_lr(),
                    seed: config.train.seed,
                    axes: point,
                    overrides: overrides.clone(),
                    from: None,
                    alpha: None,
                };
                cells.push(Cell { info, config: Some(config) });
            }
        }
        if let Some(w) = &raw.wise_ft {
            let only = match &w.axes {
                Some(t) => read_method_axes(t, &axes, &name, "wise_ft")?,
                None => BTreeMap::new(),
            };
            add_merges(w, &only, &mut cells, &name)?;
        }
        let mut seen = std::collections::HashSet::new();
        for c in &cells {
            ensure!(
                seen.insert(c.info.id.clone()),
                "{name}: two cells resolve to the same configuration ({}); make the methods or axes differ",
                c.info.label()
            );
        }
        Ok(Sweep {
            file: file.to_path_buf(),
            text,
            base,
            keep_weights: raw.keep_weights,
            eval: raw.eval,
            analyze: raw.analyze,
            cells,
        })
    }

    /// Task names of the domain and general suites, suites expanded.
    pub fn tasks(&self) -> (Vec<String>, Vec<String>) {
        (expand_suites(&self.eval.domain), expand_suites(&self.eval.general))
    }

    /// What the base directory and every cell's meaning depend on, beyond their ids: a sweep
    /// directory is reused only by a sweep file that agrees on all of it.
    pub fn settings(&self) -> Value {
        let b = &self.base;
        json!({
            "base": {"model": b.model, "data": {"path": b.data.path, "format": b.data.format, "target": b.data.target}},
            "eval": self.eval,
            "analyze": self.analyze,
        })
    }

    /// Fingerprint of the resolved sweep: settings and every cell.
    pub fn hash(&self) -> String {
        let ids: Vec<&str> = self.cells.iter().map(|c| c.info.id.as_str()).collect();
        cell_id(&json!({"settings": self.settings(), "cells": ids}))
    }
}

/// The base run config: a path to a `keel train` config, or an inline table.
fn resolve_base(base: &toml::Value, name: &str) -> Result<RunConfig> {
    match base {
        toml::Value::String(path) => {
            RunConfig::load(Path::new(path), &[]).with_context(|| format!("{name}: base = \"{path}\""))
        }
        toml::Value::Table(_) => {
            let mut tree = serde_json::to_value(base)?;
            // A sweep decides where each cell writes; the base need not say.
            let output = tree.as_object_mut().expect("a table").entry("output").or_insert_with(|| json!({}));
            if let Some(o) = output.as_object_mut() {
                o.entry("dir").or_insert_with(|| json!("run"));
            }
            RunConfig::from_tree(tree).with_context(|| format!("{name}: [base] is not a valid run config"))
        }
        _ => bail!("{name}: base must be a run config's path or an inline table ([base] with model, data, train...)"),
    }
}

/// Leaves of a TOML table as dotted keys (`train.lr`), whether written dotted, quoted or nested.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            _ => out.push((key, v.clone())),
        }
    }
}

/// Refuses a key the run config does not have, listing what its section has.
fn check_key(tree: &Value, key: &str, name: &str, place: &str) -> Result<()> {
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        match node.get(part) {
            Some(next) => node = next,
            None => {
                let section = if i == 0 { "the run config".to_string() } else { format!("[{}]", parts[..i].join(".")) };
                let has: Vec<&String> = node.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                let has: Vec<&str> = has.iter().map(|s| s.as_str()).collect();
                bail!(
                    "{name}: {place}: \"{key}\" is not a run config key ({section} has: {})",
                    if has.is_empty() { "no keys".to_string() } else { has.join(", ") }
                );
            }
        }
    }
    Ok(())
}

fn to_json(v: &toml::Value) -> Result<Value> {
    Ok(serde_json::to_value(v)?)
}

/// `[axes]`: each key a run-config key, each value a non-empty array of its values.
fn flatten_axes(axes: &toml::Table, tree: &Value, name: &str) -> Result<Vec<(String, Vec<Value>)>> {
    let mut flat = Vec::new();
    flatten("", axes, &mut flat);
    let mut out = Vec::new();
    for (key, v) in flat {
        check_key(tree, &key, name, "[axes]")?;
        let toml::Value::Array(values) = v else {
            bail!("{name}: [axes] {key} must be an array of values, e.g. {key} = [1e-5, 3e-5]");
        };
        ensure!(!values.is_empty(), "{name}: [axes] {key} is empty: give it at least one value, or remove it");
        out.push((key, values.iter().map(to_json).collect::<Result<_>>()?));
    }
    Ok(out)
}

/// One `[[methods]]` entry.
struct Method {
    name: String,
    /// Keys set together, only in this method's cells.
    overrides: BTreeMap<String, Value>,
    /// `axes = { "train.lr" = [1e-3] }`: the method runs only at these values of those axes.
    only: BTreeMap<String, Vec<Value>>,
}

impl Method {
    fn runs_at(&self, point: &BTreeMap<String, Value>) -> bool {
        self.only.iter().all(|(k, values)| point.get(k).is_some_and(|v| values.contains(v)))
    }
}

/// `[[methods]]`: a unique name each, overrides of existing keys that no axis varies, and an
/// optional `axes` table restricting the method to some values of some axes (a baseline run only
/// at the largest LR). No methods at all is one method, "base", with no overrides.
fn read_methods(
    methods: &[toml::Table],
    tree: &Value,
    axes: &[(String, Vec<Value>)],
    name: &str,
) -> Result<Vec<Method>> {
    if methods.is_empty() {
        return Ok(vec![Method { name: "base".into(), overrides: BTreeMap::new(), only: BTreeMap::new() }]);
    }
    let mut out: Vec<Method> = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        let method = match m.get("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => bail!("{name}: methods[{i}] needs a name = \"...\" (sft, talr, l2, lora, ...)"),
        };
        ensure!(
            !out.iter().any(|m| m.name == method) && method != "wise_ft",
            "{name}: methods[{i}]: the name \"{method}\" is taken; give each method its own"
        );
        let place = format!("methods[{i}] (\"{method}\")");
        let mut rest = m.clone();
        rest.remove("name");
        let only = match rest.remove("axes") {
            None => BTreeMap::new(),
            Some(toml::Value::Table(t)) => read_method_axes(&t, axes, name, &place)?,
            Some(_) => bail!("{name}: {place}: axes must be a table, e.g. axes = {{ \"train.lr\" = [1e-3] }}"),
        };
        let mut flat = Vec::new();
        flatten("", &rest, &mut flat);
        let mut overrides = BTreeMap::new();
        for (key, v) in flat {
            check_key(tree, &key, name, &place)?;
            ensure!(
                !axes.iter().any(|(a, _)| *a == key),
                "{name}: {place} sets {key}, which [axes] varies; drop one of them, or restrict the method to some of \
                 the axis' values with axes = {{ \"{key}\" = [...] }}"
            );
            overrides.insert(key, to_json(&v)?);
        }
        out.push(Method { name: method, overrides, only });
    }
    Ok(out)
}

/// A method's `axes` table: each key one of [axes], each value a non-empty list of that axis'
/// values.
fn read_method_axes(
    table: &toml::Table,
    axes: &[(String, Vec<Value>)],
    name: &str,
    place: &str,
) -> Result<BTreeMap<String, Vec<Value>>> {
    let mut flat = Vec::new();
    flatten("", table, &mut flat);
    let mut only = BTreeMap::new();
    for (key, v) in flat {
        let Some((_, values)) = axes.iter().find(|(a, _)| *a == key) else {
            bail!(
                "{name}: {place}: axes.{key} is not one of [axes] ({})",
                axes.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", ")
            );
        };
        let toml::Value::Array(list) = v else {
            bail!("{name}: {place}: axes.{key} must be an array of [axes] values")
        };
        let list: Vec<Value> = list.iter().map(to_json).collect::<Result<_>>()?;
        ensure!(!list.is_empty(), "{name}: {place}: axes.{key} is empty");
        for x in &list {
            ensure!(values.contains(x), "{name}: {place}: axes.{key} has {x}, which [axes] {key} does not");
        }
        only.insert(key, list);
    }
    Ok(only)
}

/// Every combination of the axes' values, the last axis varying fastest.
fn cartesian(axes: &[(String, Vec<Value>)]) -> Vec<BTreeMap<String, Value>> {
    let mut points = vec![BTreeMap::new()];
    for (key, values) in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(key.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    points
}

/// Sets an existing dotted key of a JSON tree.
fn set_key(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    for part in key.split('.') {
        node = &mut node[part];
    }
    *node = value;
}

/// The run config without the keys that do not change the run.
fn identity(tree: &Value) -> Value {
    let mut t = tree.clone();
    for key in NOT_IDENTITY {
        let (parent, leaf) = key.rsplit_once('.').map_or((None, key), |(p, l)| (Some(p), l));
        let node = match parent {
            Some(p) => p.split('.').try_fold(&mut t, |n, part| n.get_mut(part)),
            None => Some(&mut t),
        };
        if let Some(o) = node.and_then(|n| n.as_object_mut()) {
            o.remove(leaf);
        }
    }
    t
}

/// 16 hex digits of FNV-1a over the JSON text with object keys sorted (serde_json may keep
/// insertion order, which would tie ids to the order of RunConfig's fields).
pub fn cell_id(v: &Value) -> String {
    keel_train::checkpoint::fingerprint(canonical(v).to_string().into_bytes())
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let sorted: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        _ => v.clone(),
    }
}

fn add_merges(w: &WiseFt, only: &BTreeMap<String, Vec<Value>>, cells: &mut Vec<Cell>, name: &str) -> Result<()> {
    ensure!(!w.alpha.is_empty(), "{name}: wise_ft.alpha is empty: give at least one α in [0, 1]");
    for &a in &w.alpha {
        ensure!((0.0..=1.0).contains(&a), "{name}: wise_ft.alpha: {a} is outside [0, 1]");
    }
    let method_cells = || cells.iter().filter(|c| c.info.method == w.from);
    ensure!(method_cells().next().is_some(), "{name}: wise_ft.from = \"{}\" names no [[methods]] entry", w.from);
    let chosen = |c: &&Cell| only.iter().all(|(k, values)| c.info.axes.get(k).is_some_and(|v| values.contains(v)));
    let sources: Vec<CellInfo> = method_cells().filter(chosen).map(|c| c.info.clone()).collect();
    ensure!(!sources.is_empty(), "{name}: wise_ft.axes leaves none of the \"{}\" cells to merge", w.from);
    for src in sources {
        for &alpha in &w.alpha {
            let id = cell_id(&json!({"kind": "merge", "method": "wise_ft", "from": src.id, "alpha": alpha}));
            let info = CellInfo {
                id,
                index: cells.len(),
                method: "wise_ft".into(),
                kind: "merge".into(),
                lr: src.lr,
                seed: src.seed,
                axes: src.axes.clone(),
                overrides: BTreeMap::new(),
                from: Some(src.id.clone()),
                alpha: Some(alpha),
            };
            cells.push(Cell { info, config: None });
        }
    }
    Ok(())
}

/// Every task must exist before anything runs.
fn check_eval(eval: &EvalSection, name: &str) -> Result<()> {
    ensure!(
        !eval.domain.is_empty() || !eval.general.is_empty(),
        "{name}: [eval] names no task: set eval.domain and/or eval.general"
    );
    ensure!(eval.batch_rows > 0, "{name}: eval.batch_rows must be positive");
    for (key, suites) in [("eval.domain", &eval.domain), ("eval.general", &eval.general)] {
        for task in expand_suites(suites) {
            if GenTask::from_name(&task).is_none() {
                load_mc_task(&task).with_context(|| format!("{name}: {key}"))?;
            }
        }
    }
    let tasks = expand_suites(&[eval.domain.clone(), eval.general.clone()].concat());
    eval.limit.check_tasks(&tasks, &format!("{name}: eval.limit"))?;
    eval.max_new_tokens.check_tasks(&tasks, &format!("{name}: eval.max_new_tokens"))
}
