//! Generation tasks defined by a task file (TOML), as lm-evaluation-harness's `generate_until`
//! tasks with filters: a new benchmark, or a user's own domain, needs a file, not code.
//!
//! A task file says how each item becomes a prompt (a chat turn or a plain completion, with
//! optional few-shot examples), how long the model may answer and where it stops, and how each
//! metric reads the answer: the text after a marker, then a regex or the last number, then
//! normalization, then exact match, a numeric tolerance, or one of a label set.
//!
//! `domain:FILE` in a suite is such a task made for a training file: the conversations of its
//! held-out part ([`keel_data::holdout`]), each answered from its last user turn and judged by
//! exact match of the final answer against the file's own last assistant turn.

use crate::gen_tasks::{GenItem, Verdict};
use crate::template::{Record, Syntax};
use anyhow::{bail, ensure, Context, Result};
use keel_data::chat::Message;
use keel_data::dataset::{read_examples, Example, Fields, Format, Target};
use keel_infer::generate::GenOptions;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A generation task as its task file defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenFileSpec {
    /// The task's name in results.
    pub name: String,
    /// JSONL or CSV file: relative to the data directory, else to the task file's directory.
    pub data: String,
    /// Read `data` as training data in this layout (`messages`, `alpaca`, …, as `data.format`):
    /// each conversation's last user turn is the prompt, its last assistant turn the reference.
    /// Without it, `prompt` and `reference` are templates over each record's fields.
    #[serde(default)]
    pub data_format: Option<Format>,
    /// Field names of the generic layouts, when `data` does not use the usual ones.
    #[serde(default)]
    pub fields: Option<Fields>,
    /// Score only the held-out part of `data` (the fraction `data.holdout` of `keel train`).
    #[serde(default)]
    pub holdout: Option<f64>,
    /// How the templates are written: `{field}` (default) or Jinja.
    #[serde(default)]
    pub syntax: Syntax,
    /// `chat` (default): the prompt is a user turn in the model's chat template; `completion`:
    /// the prompt is plain text the model continues.
    #[serde(default)]
    pub format: PromptFormat,
    /// A system turn before everything else (chat only).
    #[serde(default)]
    pub system: Option<String>,
    /// The question, from the record's fields.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The answer the metrics compare with, from the record's fields.
    #[serde(default)]
    pub reference: Option<String>,
    /// Worked examples before each question.
    #[serde(default)]
    pub fewshot: Option<GenFewShot>,
    /// Tokens the model may generate (default 256).
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Texts that end the answer (cut off from it); the model's end-of-turn token always does.
    #[serde(default)]
    pub stop: Vec<String>,
    /// How answers are judged, one entry per metric.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// The metric that stands for the task (default: the first).
    #[serde(default)]
    pub primary: Option<String>,
}

fn default_max_new_tokens() -> usize {
    256
}

/// How a prompt is given to the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// A user turn in the model's chat template (few-shot examples as earlier turns).
    #[default]
    Chat,
    /// Plain text after the BOS token (few-shot examples written before the question).
    Completion,
}

/// Worked examples: the first `k` records of `data`, each its prompt and its `answer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenFewShot {
    /// JSONL or CSV file of the examples (resolved as the task's `data`).
    pub data: String,
    /// Number of examples.
    pub k: usize,
    /// The example's answer, from its fields: the assistant turn (chat), or the text written
    /// right after its prompt (completion).
    pub answer: String,
    /// Put after each example (completion only; default a blank line).
    #[serde(default = "default_shot_delimiter")]
    pub delimiter: String,
}

fn default_shot_delimiter() -> String {
    "\n\n".into()
}

/// One metric: extraction, normalization, comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// The metric's name in results.
    pub name: String,
    /// 1. Keep the text after the last occurrence of any of these markers (all of the text when
    ///    none occurs).
    #[serde(default, deserialize_with = "one_or_many")]
    pub after: Vec<String>,
    /// 2. Then take a match of this regex: its first capture group that matched, or the whole
    ///    match when it has no groups. No match: no answer (wrong).
    #[serde(default)]
    pub regex: Option<String>,
    /// 2. Or take the last number (`-1,234.5`, `.5`); none: no answer.
    #[serde(default)]
    pub last_number: bool,
    /// Which match of `regex`: `first` (default) or `last`.
    #[serde(default)]
    pub select: Select,
    /// Apply the same extraction to the reference (when the reference is a full answer, as in a
    /// training file's assistant turns).
    #[serde(default)]
    pub extract_reference: bool,
    /// 3. Normalization, of the answer and the reference alike.
    #[serde(default)]
    pub normalize: Normalize,
    /// 4. Comparison: `exact` (default), `{ numeric = { tolerance = … } }` or
    ///    `{ labels = […] }`.
    #[serde(default)]
    pub compare: Compare,
}

/// Which match of a regex is the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The first match.
    #[default]
    First,
    /// The last match.
    Last,
}

/// Text normalization before comparison, in this order: `remove`, `lowercase`,
/// `collapse_whitespace`, `strip`, `map`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalize {
    /// Regexes whose matches are deleted, each in turn (lm-evaluation-harness's
    /// `regexes_to_ignore`).
    pub remove: Vec<String>,
    /// Compare case-insensitively.
    pub lowercase: bool,
    /// Runs of whitespace become one space.
    pub collapse_whitespace: bool,
    /// Trim surrounding whitespace (default true).
    pub strip: bool,
    /// Whole texts replaced by a canonical one (`{ e = "exact" }`), after the steps above.
    pub map: BTreeMap<String, String>,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize {
            remove: Vec::new(),
            lowercase: false,
            collapse_whitespace: false,
            strip: true,
            map: BTreeMap::new(),
        }
    }
}

/// How a normalized answer is compared with the normalized reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The same text.
    #[default]
    Exact,
    /// Both are numbers within `tolerance + relative·|reference|` of each other.
    Numeric(Tolerance),
    /// The answer is one of these labels (anything else is no answer), and it is the reference.
    Labels(Vec<String>),
}

/// The slack of a numeric comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tolerance {
    /// Absolute slack.
    pub tolerance: f64,
    /// Slack relative to the reference's magnitude.
    pub relative: f64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A metric ready to judge answers: its regexes compiled.
#[derive(Clone, Debug)]
struct Metric {
    spec: MetricSpec,
    regex: Option<Regex>,
    remove: Vec<Regex>,
}

static LAST_NUMBER: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+").expect("valid regex"));

impl Metric {
    fn new(spec: MetricSpec) -> Result<Self> {
        let compile = |r: &str, key: &str| {
            Regex::new(r).with_context(|| format!("metric {}: {key} {r:?} is not a valid regex", spec.name))
        };
        ensure!(
            !(spec.regex.is_some() && spec.last_number),
            "metric {}: give `regex` or `last_number`, not both",
            spec.name
        );
        let regex = spec.regex.as_deref().map(|r| compile(r, "regex")).transpose()?;
        let remove = spec.normalize.remove.iter().map(|r| compile(r, "normalize.remove")).collect::<Result<_>>()?;
        if let Compare::Numeric(t) = &spec.compare {
            ensure!(
                t.tolerance >= 0.0 && t.relative >= 0.0 && t.tolerance.is_finite() && t.relative.is_finite(),
                "metric {}: numeric tolerances must be finite and not negative",
                spec.name
            );
        }
        if let Compare::Labels(labels) = &spec.compare {
            ensure!(!labels.is_empty(), "metric {}: `labels` is empty", spec.name);
        }
        Ok(Metric { spec, regex, remove })
    }

    /// The answer the metric reads from `text`, before normalization; `None` when there is none.
    fn extract<'a>(&self, text: &'a str) -> Option<&'a str> {
        let after = self
            .spec
            .after
            .iter()
            .filter_map(|m| text.rfind(m.as_str()).map(|i| i + m.len()))
            .max()
            .map_or(text, |i| &text[i..]);
        let pick = |r: &Regex| {
            let captures = match self.spec.select {
                Select::First => r.captures(after),
                Select::Last => r.captures_iter(after).last(),
            }?;
            let group = (1..captures.len()).find_map(|g| captures.get(g)).or_else(|| captures.get(0))?;
            Some(group.as_str())
        };
        match (&self.regex, self.spec.last_number) {
            (Some(r), _) => pick(r),
            (None, true) => LAST_NUMBER.find_iter(after).last().map(|m| m.as_str()),
            (None, false) => Some(after),
        }
    }

    fn normalize(&self, text: &str) -> String {
        let n = &self.spec.normalize;
        let mut s = text.to_string();
        for r in &self.remove {
            s = r.replace_all(&s, "").into_owned();
        }
        if n.lowercase {
            s = s.to_lowercase();
        }
        if n.collapse_whitespace {
            s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if n.strip {
            s = s.trim().to_string();
        }
        n.map.get(&s).cloned().unwrap_or(s)
    }

    fn judge(&self, response: &str, reference: &str) -> Verdict {
        let extracted = self.extract(response);
        let reference = if self.spec.extract_reference { self.extract(reference) } else { Some(reference) };
        let ok = match (extracted, reference) {
            (Some(answer), Some(reference)) => {
                let (answer, reference) = (self.normalize(answer), self.normalize(reference));
                match &self.spec.compare {
                    Compare::Exact => answer == reference,
                    Compare::Numeric(t) => match (parse_number(&answer), parse_number(&reference)) {
                        (Some(a), Some(r)) => (a - r).abs() <= t.tolerance + t.relative * r.abs(),
                        _ => false,
                    },
                    Compare::Labels(labels) => labels.contains(&answer) && answer == reference,
                }
            }
            _ => false,
        };
        Verdict::binary(&self.spec.name, json!(extracted), ok)
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().replace(',', "").parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A generation task read from a task file (or made for a training file by `domain:FILE`).
#[derive(Clone, Debug)]
pub struct GenFileTask {
    /// What the file says.
    pub spec: GenFileSpec,
    /// The directory of the task file, where `data` is looked for after the data directory.
    pub dir: PathBuf,
    metrics: Vec<Metric>,
}

impl GenFileTask {
    /// Parses a task file's text; `origin` names it in errors, `dir` is its directory.
    pub fn from_toml(text: &str, origin: &str, dir: &Path) -> Result<Self> {
        let spec: GenFileSpec = toml::from_str(text).with_context(|| format!("task file {origin} is invalid"))?;
        Self::new(spec, dir).with_context(|| format!("task file {origin} is invalid"))
    }

    /// Reads a task file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read task file {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string(), path.parent().unwrap_or(Path::new(".")))
    }

    /// The task `domain:FILE` stands for: the held-out `fraction` of a training file (any layout
    /// `keel train` reads, told by its fields), answered in the chat format and judged by exact
    /// match of the final answer: the text after the last `Answer:` or `####` when there is one,
    /// else the whole answer, compared case- and whitespace-insensitively without a final period.
    pub fn for_training_file(path: &Path, fraction: f64) -> Result<Self> {
        keel_data::holdout::check_fraction(fraction, "--holdout")?;
        ensure!(
            fraction > 0.0,
            "domain:{} scores the held-out part of a training file: pass --holdout with the fraction training held \
             out (data.holdout)",
            path.display()
        );
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("domain").to_string();
        let spec = GenFileSpec {
            name,
            data: path.display().to_string(),
            data_format: Some(Format::detect(path)?),
            fields: None,
            holdout: Some(fraction),
            syntax: Syntax::Fields,
            format: PromptFormat::Chat,
            system: None,
            prompt: None,
            reference: None,
            fewshot: None,
            max_new_tokens: 512,
            stop: Vec::new(),
            metrics: vec![MetricSpec {
                name: "exact_match".into(),
                after: vec!["Answer:".into(), "####".into()],
                regex: None,
                last_number: false,
                select: Select::First,
                extract_reference: true,
                normalize: Normalize {
                    remove: vec![r"\.$".into()],
                    lowercase: true,
                    collapse_whitespace: true,
                    strip: true,
                    map: BTreeMap::new(),
                },
                compare: Compare::Exact,
            }],
            primary: None,
        };
        Self::new(spec, Path::new("."))
    }

    fn new(spec: GenFileSpec, dir: &Path) -> Result<Self> {
        ensure!(!spec.metrics.is_empty(), "it has no [[metrics]]: say how answers are judged");
        if let Some(p) = &spec.primary {
            ensure!(spec.metrics.iter().any(|m| &m.name == p), "primary = {p:?} is not one of its metrics");
        }
        let mut names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        names.sort();
        ensure!(names.windows(2).all(|w| w[0] != w[1]), "two metrics share a name");
        if let Some(f) = spec.holdout {
            keel_data::holdout::check_fraction(f, "holdout")?;
        }
        ensure!(spec.max_new_tokens > 0, "max_new_tokens must be positive");
        match spec.data_format {
            Some(_) => ensure!(
                spec.prompt.is_none()
                    && spec.reference.is_none()
                    && spec.fewshot.is_none()
                    && spec.format == PromptFormat::Chat,
                "with `data_format` the prompts and references are the data's own conversations: drop `prompt`, \
                 `reference`, `fewshot` and `format`"
            ),
            None => {
                let (Some(prompt), Some(reference)) = (&spec.prompt, &spec.reference) else {
                    bail!("give `prompt` and `reference` templates (or `data_format` for a training file)");
                };
                ensure!(spec.fields.is_none() && spec.holdout.is_none(), "`fields` and `holdout` need `data_format`");
                spec.syntax.check(prompt, "prompt")?;
                spec.syntax.check(reference, "reference")?;
                if let Some(f) = &spec.fewshot {
                    spec.syntax.check(&f.answer, "fewshot.answer")?;
                }
            }
        }
        ensure!(spec.system.is_none() || spec.format == PromptFormat::Chat, "`system` needs format = \"chat\"");
        let metrics = spec.metrics.iter().cloned().map(Metric::new).collect::<Result<_>>()?;
        Ok(GenFileTask { spec, dir: dir.to_path_buf(), metrics })
    }

    /// The task's name in results.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The metric that stands for the task.
    pub fn primary_metric(&self) -> &str {
        self.spec.primary.as_deref().unwrap_or(&self.spec.metrics[0].name)
    }

    /// Where a data file of the task is: under the data directory, else beside the task file.
    fn locate(&self, data_dir: &Path, file: &str) -> Result<PathBuf> {
        let candidates = [data_dir.join(file), self.dir.join(file)];
        candidates.iter().find(|p| p.exists()).cloned().with_context(|| {
            format!(
                "task {}: cannot find its data {file} (looked for {} and {})",
                self.spec.name,
                candidates[0].display(),
                candidates[1].display()
            )
        })
    }

    /// The conversations of a `data_format` task (its held-out part when `holdout` is set).
    pub fn conversations(&self, data_dir: &Path) -> Result<Option<Vec<Example>>> {
        let Some(format) = self.spec.data_format else { return Ok(None) };
        let path = self.locate(data_dir, &self.spec.data)?;
        let fields = self.spec.fields.clone().unwrap_or_default();
        let mut examples = read_examples(&path, format, Target::Cot, &fields)?;
        if let Some(fraction) = self.spec.holdout {
            examples = keel_data::holdout::split(examples, fraction).1;
        }
        Ok(Some(examples))
    }

    /// The task's questions.
    pub fn items(&self, data_dir: &Path) -> Result<Vec<GenItem>> {
        let items = match self.conversations(data_dir)? {
            Some(examples) => examples.into_iter().map(conversation_item).collect::<Result<Vec<_>>>()?,
            None => self.template_items(data_dir)?,
        };
        ensure!(!items.is_empty(), "task {} has no items (is its data, or its held-out part, empty?)", self.spec.name);
        Ok(items)
    }

    fn template_items(&self, data_dir: &Path) -> Result<Vec<GenItem>> {
        let s = &self.spec;
        let (prompt, reference) = (s.prompt.as_deref().unwrap_or_default(), s.reference.as_deref().unwrap_or_default());
        let render = |t: &str, rec: &Record, source: &str| s.syntax.render(t, rec).with_context(|| source.to_string());
        let mut shots: Vec<Message> = s.system.iter().map(|t| Message::new("system", t)).collect();
        let mut prefix = String::new();
        if let Some(f) = &s.fewshot {
            let records = crate::mc::read_records(&self.locate(data_dir, &f.data)?)?;
            ensure!(
                records.len() >= f.k,
                "task {}: fewshot.k = {} but {} holds {}",
                s.name,
                f.k,
                f.data,
                records.len()
            );
            for (source, rec) in records.iter().take(f.k) {
                let (question, answer) = (render(prompt, rec, source)?, render(&f.answer, rec, source)?);
                match s.format {
                    PromptFormat::Chat => {
                        shots.push(Message::new("user", &question));
                        shots.push(Message::new("assistant", &answer));
                    }
                    PromptFormat::Completion => prefix.push_str(&format!("{question}{answer}{}", f.delimiter)),
                }
            }
        }
        crate::mc::read_records(&self.locate(data_dir, &s.data)?)?
            .into_iter()
            .map(|(source, rec)| {
                Ok(GenItem {
                    prompt: format!("{prefix}{}", render(prompt, &rec, &source)?),
                    reference: json!(render(reference, &rec, &source)?),
                    shots: shots.clone(),
                    source,
                })
            })
            .collect()
    }

    /// How the task generates: its budget (unless `max_new_tokens` overrides it) and stops.
    pub fn options(&self, max_new_tokens: usize) -> GenOptions {
        GenOptions {
            max_new_tokens: if max_new_tokens > 0 { max_new_tokens } else { self.spec.max_new_tokens },
            stop: self.spec.stop.clone(),
            ..GenOptions::default()
        }
    }

    /// Whether prompts are chat turns (else plain completions).
    pub fn is_chat(&self) -> bool {
        self.spec.format == PromptFormat::Chat
    }

    /// One verdict per metric.
    pub fn score(&self, item: &GenItem, response: &str) -> Vec<Verdict> {
        let reference = item.reference.as_str().unwrap_or_default();
        self.metrics.iter().map(|m| m.judge(response, reference)).collect()
    }
}

/// A training conversation as a question: the turns before its last user turn, that turn, and
/// the last assistant turn as the reference.
fn conversation_item(example: Example) -> Result<GenItem> {
    let Example { mut messages, source } = example;
    let answer = messages.pop().filter(|m| m.role == "assistant");
    let question = messages.pop().filter(|m| m.role == "user");
    let (Some(answer), Some(question)) = (answer, question) else {
        bail!("{source}: the conversation does not end with a user turn and the assistant's answer to it");
    };
    Ok(GenItem { source, prompt: question.content, reference: json!(answer.content), shots: messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(toml_text: &str) -> Metric {
        Metric::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn extraction_takes_the_marker_then_the_regex_group_or_the_last_number() {
        let m = metric("name = \"m\"\nafter = \"Answer:\"\nregex = 'is (\\d+)|(\\d+)'\nselect = \"last\"");
        assert_eq!(m.extract("Answer: 3 then it is 42 ok"), Some("42"));
        assert_eq!(m.extract("no marker 7 and 8"), Some("8"));
        assert_eq!(m.extract("Answer: none"), None);
        let last = metric("name = \"m\"\nlast_number = true");
        assert_eq!(last.extract("from -1,234.5 to .5 apples"), Some(".5"));
        assert_eq!(last.extract("nothing"), None);
        let markers = metric("name = \"m\"\nafter = [\"Answer:\", \"####\"]");
        assert_eq!(markers.extract("Answer: 3\n#### 4"), Some(" 4"));
        assert_eq!(markers.extract("#### 4\nAnswer: 3"), Some(" 3"));
    }

    #[test]
    fn normalization_and_the_three_comparisons() {
        let exact = metric(
            "name = \"m\"\nnormalize = { remove = [',', '\\.$'], lowercase = true, collapse_whitespace = true }",
        );
        assert!(exact.judge("  The  ANSWER, 1,000.", "the answer 1000").passed == 1);
        let numeric = metric("name = \"m\"\nlast_number = true\ncompare = { numeric = { tolerance = 0.05 } }");
        assert_eq!(numeric.judge("about 3.14", "3.1").passed, 1);
        assert_eq!(numeric.judge("about 3.2", "3.1").passed, 0);
        assert_eq!(numeric.judge("no number", "3.1").passed, 0);
        let relative = metric("name = \"m\"\ncompare = { numeric = { relative = 0.01 } }");
        assert_eq!(relative.judge("1005", "1000").passed, 1);
        assert_eq!(relative.judge("1011", "1000").passed, 0);
        let labels = metric(
            "name = \"m\"\nnormalize = { lowercase = true, map = { y = \"yes\", n = \"no\" } }\ncompare = { labels = [\"yes\", \"no\"] }",
        );
        assert_eq!(labels.judge("Y", "yes").passed, 1);
        assert_eq!(labels.judge("maybe", "maybe").passed, 0, "an answer outside the label set is no answer");
    }

    #[test]
    fn bad_task_files_are_refused_with_what_is_wrong() {
        let dir = Path::new(".");
        let base = "name = \"t\"\ndata = \"d.jsonl\"\nprompt = \"{q}\"\nreference = \"{a}\"\n";
        let err = |text: &str| format!("{:#}", GenFileTask::from_toml(text, "t.toml", dir).unwrap_err());
        assert!(err(base).contains("no [[metrics]]"));
        assert!(err(&format!("{base}[[metrics]]\nname = \"m\"\nregex = \"(\"\n")).contains("not a valid regex"));
        assert!(err(&format!("{base}primary = \"x\"\n[[metrics]]\nname = \"m\"\n")).contains("primary"));
        assert!(
            err(&format!("{base}[[metrics]]\nname = \"m\"\nregex = \"a\"\nlast_number = true\n")).contains("not both")
        );
        assert!(err(&format!("{base}bogus = 1\n[[metrics]]\nname = \"m\"\n")).contains("bogus"));
        assert!(err("name = \"t\"\ndata = \"d\"\n[[metrics]]\nname = \"m\"\n").contains("`prompt` and `reference`"));
        assert!(
            err(&format!("{base}data_format = \"messages\"\n[[metrics]]\nname = \"m\"\n")).contains("drop `prompt`")
        );
        assert!(err(&format!("{base}format = \"completion\"\nsystem = \"s\"\n[[metrics]]\nname = \"m\"\n"))
            .contains("system"));
        assert!(err(&format!("{base}[[metrics]]\nname = \"m\"\ncompare = {{ labels = [] }}\n")).contains("empty"));
    }
}
