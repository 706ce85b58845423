//! Multiple-choice tasks scored by log-likelihood, defined by a task file (TOML) rather than
//! code: where the data is, how the context is written, where the options and the gold index
//! are. Two forms, as in lm-evaluation-harness:
//! - one context and several choices (ARC, MMLU): each choice is scored after the context;
//! - several contexts and one shared continuation (Winogrande's partial scoring): the
//!   continuation is scored after each context.
//!
//! `acc` picks the option with the highest log-likelihood, `acc_norm` the highest per character
//! of its continuation, as lm-evaluation-harness computes them.

use crate::loglik::loglikelihoods;
use crate::template::{as_text, Record, Syntax};
use anyhow::{bail, ensure, Context, Result};
use keel_data::tokenizer::Tokenizer;
use keel_infer::progress::Progress;
use keel_model::Transformer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// A multiple-choice task as its task file (TOML) defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McTask {
    /// The task's name in results.
    pub name: String,
    /// JSONL or CSV file, relative to the data directory.
    pub data: String,
    /// How the templates are written: `{field}` (default) or Jinja.
    #[serde(default)]
    pub syntax: Syntax,
    /// The context, with the item's fields filled in (the choices form).
    #[serde(default)]
    pub context: Option<String>,
    /// Where each item's choices come from (the choices form).
    #[serde(default)]
    pub choices: Option<Choices>,
    /// Where each item's contexts come from (partial scoring: each is a context of the shared
    /// `continuation`).
    #[serde(default)]
    pub contexts: Option<Choices>,
    /// The continuation scored after each of the `contexts`, with the item's fields filled in.
    #[serde(default)]
    pub continuation: Option<String>,
    /// Field holding the index of the correct option.
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

/// Where an item's options (choices or contexts) come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choices {
    /// A field holding a list of strings.
    Field(String),
    /// One field per option.
    Fields(Vec<String>),
    /// The same texts for every item (e.g. A, B, C, D).
    List(Vec<String>),
}

fn default_delimiter() -> String {
    " ".into()
}

/// One question, ready to score: option `i` is the pair (context `i`, continuation `i`), where
/// one of the two lists holds a single text that every option shares.
#[derive(Clone, Debug, PartialEq)]
pub struct McItem {
    /// The text before the continuation (few-shot prefix and description included): one shared
    /// context (the choices form), or one per option (partial scoring).
    pub contexts: Vec<String>,
    /// The text scored after the context, target delimiter included: one per choice, or one
    /// shared continuation (partial scoring).
    pub continuations: Vec<String>,
    /// Index of the correct option.
    pub gold: usize,
    /// `file:line` of the item.
    pub source: String,
    /// The item's subject, for tasks split by subject.
    pub subject: Option<String>,
}

impl McItem {
    /// The number of options.
    pub fn options(&self) -> usize {
        self.contexts.len().max(self.continuations.len())
    }

    /// Option `i` as (context, continuation).
    pub fn pair(&self, i: usize) -> (&str, &str) {
        fn pick(v: &[String], i: usize) -> &str {
            &v[i.min(v.len() - 1)]
        }
        (pick(&self.contexts, i), pick(&self.continuations, i))
    }
}

/// The outcome of one item.
#[derive(Clone, Debug, Serialize)]
pub struct McResult {
    /// `file:line` of the item.
    pub source: String,
    /// Index of the correct choice.
    pub gold: usize,
    /// Per option, `Σ log p(continuation | context)`.
    pub loglikelihoods: Vec<f64>,
    /// Per option, whether greedy decoding would produce its continuation.
    pub is_greedy: Vec<bool>,
    /// The option `acc` picks: the highest log-likelihood.
    pub pred_acc: usize,
    /// The option `acc_norm` picks: the highest log-likelihood per character of continuation.
    pub pred_acc_norm: usize,
}

impl McTask {
    /// Parses a task file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let task: McTask = toml::from_str(text).with_context(|| format!("task file {origin} is invalid"))?;
        task.check().with_context(|| format!("task file {origin} is invalid"))?;
        Ok(task)
    }

    /// Exactly one of the two forms, and templates that parse.
    fn check(&self) -> Result<()> {
        match (&self.context, &self.choices, &self.contexts, &self.continuation) {
            (Some(context), Some(_), None, None) => self.syntax.check(context, "context")?,
            (None, None, Some(_), Some(continuation)) => self.syntax.check(continuation, "continuation")?,
            _ => bail!(
                "give either `context` and `choices` (one context, several choices) or `contexts` and \
                 `continuation` (several contexts, one continuation: partial scoring)"
            ),
        }
        self.syntax.check(&self.description, "description")
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
                    let (context, continuation) = shot.pair(shot.gold);
                    prefix.push_str(&format!("{context}{continuation}{}", f.delimiter));
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

    fn item(&self, rec: &Record, source: String, prefix: &str, subject: Option<String>) -> Result<McItem> {
        let render = |t: &str| self.syntax.render(t, rec).with_context(|| source.clone());
        let delimited = |t: String| format!("{}{t}", self.target_delimiter);
        let (contexts, continuations): (Vec<String>, Vec<String>) =
            match (&self.context, &self.choices, &self.contexts, &self.continuation) {
                (Some(context), Some(choices), _, _) => (
                    vec![format!("{prefix}{}", render(context)?)],
                    options(choices, rec, &source)?.into_iter().map(delimited).collect(),
                ),
                (_, _, Some(contexts), Some(continuation)) => (
                    options(contexts, rec, &source)?.into_iter().map(|c| format!("{prefix}{c}")).collect(),
                    vec![delimited(render(continuation)?)],
                ),
                _ => bail!("task {} has neither form (checked when it was read)", self.name),
            };
        let count = contexts.len().max(continuations.len());
        ensure!(contexts.len().min(continuations.len()) > 0, "{source}: no options");
        let gold = rec.get(&self.gold).with_context(|| format!("{source}: no field \"{}\"", self.gold))?;
        let gold = match gold {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .with_context(|| format!("{source}: gold index {gold} is not a non-negative integer"))?
            as usize;
        ensure!(gold < count, "{source}: gold index {gold} is out of range for {count} options");
        Ok(McItem { contexts, continuations, gold, source, subject })
    }
}

/// An item's choices (or contexts) as texts.
fn options(choices: &Choices, rec: &Record, source: &str) -> Result<Vec<String>> {
    Ok(match choices {
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
    })
}

/// JSONL objects or CSV rows (by header), each with its `file:line`.
pub fn read_records(path: &Path) -> Result<Vec<(String, Record)>> {
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
        for i in 0..item.options() {
            let (context, continuation) = item.pair(i);
            pairs.push(encode_pair(tok, context, continuation)?);
        }
    }
    let scores = loglikelihoods(model, &pairs, rows, progress)?;
    let mut results = Vec::with_capacity(items.len());
    let mut at = 0;
    for item in items {
        let s = &scores[at..at + item.options()];
        at += item.options();
        let ll: Vec<f64> = s.iter().map(|x| x.ll).collect();
        // Per character of the choice, as lm-evaluation-harness counts it (without the delimiter).
        let chars = |i: usize| {
            item.pair(i).1.strip_prefix(task.target_delimiter.as_str()).unwrap_or(item.pair(i).1).chars().count()
        };
        let norm: Vec<f64> = ll.iter().enumerate().map(|(i, l)| l / chars(i).max(1) as f64).collect();
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
