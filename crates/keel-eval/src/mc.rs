//! Multiple-choice tasks scored by log-likelihood, defined by a task file (TOML) rather than
//! code: where the data is, how the context is written, where the choices and the gold index
//! are. `acc` picks the choice with the highest log-likelihood, `acc_norm` the highest per
//! character of the choice, as lm-evaluation-harness computes them.

use crate::loglik::loglikelihoods;
use anyhow::{bail, ensure, Context, Result};
use keel_data::tokenizer::Tokenizer;
use keel_infer::progress::Progress;
use keel_model::Transformer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A multiple-choice task as its task file (TOML) defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McTask {
    /// The task's name in results.
    pub name: String,
    /// JSONL or CSV file, relative to the data directory.
    pub data: String,
    /// The context, with `{field}` replaced by the item's fields.
    pub context: String,
    /// Where each item's choices come from.
    pub choices: Choices,
    /// Field holding the index of the correct choice.
    pub gold: String,
    /// Put between the context and each choice.
    #[serde(default = "default_delimiter")]
    pub target_delimiter: String,
    /// Text before the few-shot examples and the question (`{subject}` is replaced by the
    /// subject with spaces for underscores).
    #[serde(default)]
    pub description: String,
    /// Worked examples placed before each question (none by default).
    #[serde(default)]
    pub fewshot: Option<FewShot>,
    /// A task per subject: `data` (and the few-shot data) contain `{subject}`, and the subjects
    /// are the files of `dir` ending in `suffix`.
    #[serde(default)]
    pub subjects: Option<Subjects>,
}

/// Worked examples before each question: the first `k` items of `data`, each written as its
/// context, the target delimiter and its gold choice, followed by `delimiter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewShot {
    /// JSONL or CSV file of the examples, relative to the data directory.
    pub data: String,
    /// Number of examples.
    pub k: usize,
    /// Put after each example.
    #[serde(default = "default_fewshot_delimiter")]
    pub delimiter: String,
}

/// The subjects of a task split by subject (MMLU): one per file of `dir` ending in `suffix`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subjects {
    /// Directory listing the subjects, relative to the data directory.
    pub dir: String,
    /// The file-name ending after the subject's name.
    pub suffix: String,
}

fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}

/// Where the choices come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choices {
    /// A field holding a list of strings.
    Field(String),
    /// One field per choice.
    Fields(Vec<String>),
    /// The same labels for every item (e.g. A, B, C, D).
    List(Vec<String>),
}

fn default_delimiter() -> String {
    " ".into()
}

/// One question, ready to score.
#[derive(Clone, Debug, PartialEq)]
pub struct McItem {
    /// The text before each choice (few-shot prefix and description included).
    pub context: String,
    /// The answer texts, each scored as a continuation of the context.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
    /// `file:line` of the item.
    pub source: String,
    /// The item's subject, for tasks split by subject.
    pub subject: Option<String>,
}

/// The outcome of one item.
#[derive(Clone, Debug, Serialize)]
pub struct McResult {
    /// `file:line` of the item.
    pub source: String,
    /// Index of the correct choice.
    pub gold: usize,
    /// Per choice, `Σ log p(choice | context)`.
    pub loglikelihoods: Vec<f64>,
    /// Per choice, whether greedy decoding would produce it.
    pub is_greedy: Vec<bool>,
    /// The choice `acc` picks: the highest log-likelihood.
    pub pred_acc: usize,
    /// The choice `acc_norm` picks: the highest log-likelihood per character.
    pub pred_acc_norm: usize,
}

impl McTask {
    /// Parses a task file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).with_context(|| format!("task file {origin} is invalid"))
    }

    /// Reads the task's items from `data_dir` (every subject's, with few-shot prefixes).
    pub fn items(&self, data_dir: &Path) -> Result<Vec<McItem>> {
        let subjects: Vec<Option<String>> = match &self.subjects {
            None => vec![None],
            Some(s) => {
                let dir = data_dir.join(&s.dir);
                let mut names: Vec<String> = std::fs::read_dir(&dir)
                    .with_context(|| {
                        format!("cannot list {} ({}, or pass --data-dir)", dir.display(), keel_data::fetch_hint(""))
                    })?
                    .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(s.suffix.as_str()).map(String::from))
                    .collect();
                names.sort();
                ensure!(!names.is_empty(), "no file in {} ends in {}", dir.display(), s.suffix);
                names.into_iter().map(Some).collect()
            }
        };
        let mut items = Vec::new();
        for subject in subjects {
            let with_subject = |t: &str| subject.as_deref().map_or(t.to_string(), |s| t.replace("{subject}", s));
            let mut prefix = self.description.replace("{subject}", &subject.as_deref().unwrap_or("").replace('_', " "));
            if let Some(f) = &self.fewshot {
                for (source, rec) in read_records(&data_dir.join(with_subject(&f.data)))?.iter().take(f.k) {
                    let shot = self.item(rec, source.clone(), "", None)?;
                    prefix.push_str(&format!(
                        "{}{}{}{}",
                        shot.context, self.target_delimiter, shot.choices[shot.gold], f.delimiter
                    ));
                }
            }
            let path = data_dir.join(with_subject(&self.data));
            let records = read_records(&path)?;
            // An empty file would score 0 with n = 0 and look like a result.
            ensure!(!records.is_empty(), "{} holds no items (it is empty)", path.display());
            for (source, rec) in records {
                items.push(self.item(&rec, source, &prefix, subject.clone())?);
            }
        }
        Ok(items)
    }

    fn item(
        &self,
        rec: &BTreeMap<String, Value>,
        source: String,
        prefix: &str,
        subject: Option<String>,
    ) -> Result<McItem> {
        let context = format!("{prefix}{}", render(&self.context, rec).with_context(|| source.clone())?);
        let choices: Vec<String> = match &self.choices {
            Choices::Field(f) => rec
                .get(f)
                .and_then(Value::as_array)
                .with_context(|| format!("{source}: no list field \"{f}\""))?
                .iter()
                .map(as_text)
                .collect(),
            Choices::Fields(fs) => fs
                .iter()
                .map(|f| rec.get(f).map(as_text).with_context(|| format!("{source}: no field \"{f}\"")))
                .collect::<Result<_>>()?,
            Choices::List(l) => l.clone(),
        };
        ensure!(!choices.is_empty(), "{source}: no choices");
        let gold = rec.get(&self.gold).with_context(|| format!("{source}: no field \"{}\"", self.gold))?;
        let gold = match gold {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .with_context(|| format!("{source}: gold index {gold} is not a non-negative integer"))?
            as usize;
        ensure!(gold < choices.len(), "{source}: gold index {gold} is out of range for {} choices", choices.len());
        Ok(McItem { context, choices, gold, source, subject })
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{field}` → the field's text; `{field.strip}` without surrounding whitespace.
fn render(template: &str, rec: &BTreeMap<String, Value>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').with_context(|| format!("unclosed {{ in the template {template:?}"))? + start;
        let name = &rest[start + 1..end];
        let (field, strip) = match name.strip_suffix(".strip") {
            Some(f) => (f, true),
            None => (name, false),
        };
        out.push_str(&rest[..start]);
        let text =
            as_text(rec.get(field).with_context(|| format!("the template uses {{{name}}}, which the item lacks"))?);
        out.push_str(if strip { text.trim() } else { &text });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// JSONL objects or CSV rows (by header), each with its `file:line`.
fn read_records(path: &Path) -> Result<Vec<(String, BTreeMap<String, Value>)>> {
    let hint = format!("{}, or pass --data-dir", keel_data::fetch_hint(""));
    if path.extension().is_some_and(|e| e == "csv") {
        let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {} ({hint})", path.display()))?;
        let headers = r.headers()?.clone();
        return r
            .records()
            .enumerate()
            .map(|(i, rec)| {
                let source = format!("{}:{}", path.display(), i + 2);
                let rec = rec.with_context(|| format!("{source}: malformed CSV"))?;
                Ok((
                    source,
                    headers
                        .iter()
                        .zip(rec.iter())
                        .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                        .collect(),
                ))
            })
            .collect();
    }
    keel_data::jsonl::read_values(path, &hint)?
        .into_iter()
        .map(|(n, v)| {
            let source = format!("{}:{n}", path.display());
            match v {
                Value::Object(o) => Ok((source, o.into_iter().collect())),
                _ => bail!("{source}: not a JSON object"),
            }
        })
        .collect()
}

/// Token ids of (context, continuation) as lm-evaluation-harness forms them: trailing
/// whitespace of the context moves to the continuation, the pair is encoded whole, and the
/// continuation is what follows the context's own encoding.
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end();
    let (context, continuation) = (trimmed, format!("{}{continuation}", &context[trimmed.len()..]));
    let whole = tok.encode(&format!("{context}{continuation}"), false)?;
    let ctx = tok.encode(context, false)?;
    ensure!(whole.len() > ctx.len(), "the continuation {continuation:?} adds no tokens");
    Ok((whole[..ctx.len()].to_vec(), whole[ctx.len()..].to_vec()))
}

/// Scores `items`; returns each item's result and (acc, acc_norm).
pub fn evaluate(
    model: &Transformer,
    tok: &Tokenizer,
    task: &McTask,
    items: &[McItem],
    rows: usize,
    progress: &mut Progress,
) -> Result<(Vec<McResult>, f64, f64)> {
    let mut pairs = Vec::new();
    for item in items {
        for choice in &item.choices {
            pairs.push(encode_pair(tok, &item.context, &format!("{}{choice}", task.target_delimiter))?);
        }
    }
    let scores = loglikelihoods(model, &pairs, rows, progress)?;
    let mut results = Vec::with_capacity(items.len());
    let mut at = 0;
    for item in items {
        let s = &scores[at..at + item.choices.len()];
        at += item.choices.len();
        let ll: Vec<f64> = s.iter().map(|x| x.ll).collect();
        let norm: Vec<f64> = ll.iter().zip(&item.choices).map(|(l, c)| l / c.chars().count().max(1) as f64).collect();
        results.push(McResult {
            source: item.source.clone(),
            gold: item.gold,
            pred_acc: argmax(&ll),
            pred_acc_norm: argmax(&norm),
            loglikelihoods: ll,
            is_greedy: s.iter().map(|x| x.is_greedy).collect(),
        });
    }
    let n = results.len().max(1) as f64;
    let acc = results.iter().filter(|r| r.pred_acc == r.gold).count() as f64 / n;
    let acc_norm = results.iter().filter(|r| r.pred_acc_norm == r.gold).count() as f64 / n;
    Ok((results, acc, acc_norm))
}

/// Index of the largest value (the first on ties, as numpy's argmax).
fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}
