//! Training data: JSONL conversations in the common layouts, and the domain sets of the paper
//! (GSM8K, MedCalc-Bench, ESCI), all read into [`Example`]s (a list of chat messages).
//!
//! A malformed line is an error naming `file:line` before any training starts.

use crate::chat::Message;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// One training conversation, with where it came from (for messages and FLOW's cache).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The conversation, in order; the assistant turns are the targets.
    pub messages: Vec<Message>,
    /// `file:line` (JSONL) or `file:row N` (CSV).
    pub source: String,
}

/// The layout of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"messages": [{"role", "content"}, …]}` (OpenAI style).
    Messages,
    /// `{"prompt", "completion"}`.
    PromptCompletion,
    /// `{"instruction", "input", "output"}`.
    Alpaca,
    /// `{"conversations": [{"from", "value"}, …]}`.
    Sharegpt,
    /// GSM8K `{"question", "answer"}`.
    Gsm8k,
    /// MedCalc-Bench `test_data.csv`, training part of the split.
    Medcalc,
    /// ESCI JSONL `{"query", "product_title", "product_description"?, "label", "rationale"?}`.
    Esci,
}

impl Format {
    /// The layout of a data file, told by its first record's fields (a `.csv` is MedCalc-Bench's),
    /// for commands that take any training file without a run config.
    pub fn detect(path: &Path) -> Result<Format> {
        if path.extension().is_some_and(|e| e == "csv") {
            return Ok(Format::Medcalc);
        }
        let lines = crate::jsonl::read_values(path, "pass a JSONL training data file")?;
        let (line, first) = lines.first().with_context(|| format!("{} holds no examples", path.display()))?;
        let has = |k: &str| first.get(k).is_some();
        Ok(if has("messages") {
            Format::Messages
        } else if has("conversations") {
            Format::Sharegpt
        } else if has("prompt") && has("completion") {
            Format::PromptCompletion
        } else if has("instruction") && has("output") {
            Format::Alpaca
        } else if has("question") && has("answer") {
            Format::Gsm8k
        } else if has("query") && has("product_title") {
            Format::Esci
        } else {
            bail!(
                "{}:{line}: cannot tell the data's layout from its fields; expected messages, conversations, \
                 prompt + completion, instruction + output, question + answer (GSM8K) or query + product_title (ESCI)",
                path.display()
            )
        })
    }
}

/// Chain-of-thought targets or the label alone (domain sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The reasoning followed by the answer.
    Cot,
    /// The answer alone.
    Label,
}

/// Field names of the generic formats (each defaults to the usual name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    /// The message list of [`Format::Messages`].
    pub messages: String,
    /// A message's role ([`Format::Messages`]).
    pub role: String,
    /// A message's text ([`Format::Messages`]).
    pub content: String,
    /// The user turn of [`Format::PromptCompletion`].
    pub prompt: String,
    /// The assistant turn of [`Format::PromptCompletion`].
    pub completion: String,
    /// The task of [`Format::Alpaca`].
    pub instruction: String,
    /// The optional input appended to the task ([`Format::Alpaca`]).
    pub input: String,
    /// The assistant turn of [`Format::Alpaca`].
    pub output: String,
    /// An optional system message ([`Format::PromptCompletion`], [`Format::Alpaca`]).
    pub system: String,
    /// The turn list of [`Format::Sharegpt`].
    pub conversations: String,
    /// A turn's speaker ([`Format::Sharegpt`]: human, gpt or system).
    pub from: String,
    /// A turn's text ([`Format::Sharegpt`]).
    pub value: String,
}

impl Default for Fields {
    fn default() -> Self {
        let s = String::from;
        Fields {
            messages: s("messages"),
            role: s("role"),
            content: s("content"),
            prompt: s("prompt"),
            completion: s("completion"),
            instruction: s("instruction"),
            input: s("input"),
            output: s("output"),
            system: s("system"),
            conversations: s("conversations"),
            from: s("from"),
            value: s("value"),
        }
    }
}

/// Reads every example of `path` in `format`.
pub fn read_examples(path: &Path, format: Format, target: Target, fields: &Fields) -> Result<Vec<Example>> {
    if format == Format::Medcalc {
        return Ok(crate::medcalc::read_medcalc(path)?
            .into_iter()
            .filter(|r| !r.held_out)
            .map(|r| Example { messages: r.messages(target), source: r.source.clone() })
            .collect());
    }
    let lines = crate::jsonl::read_values(path, &crate::fetch_hint(""))?;
    let mut out = Vec::new();
    for (n, v) in lines {
        let source = format!("{}:{n}", path.display());
        let messages = convert(&v, format, target, fields).with_context(|| source.clone())?;
        out.push(Example { messages, source });
    }
    ensure!(!out.is_empty(), "{} holds no examples (it is empty or blank)", path.display());
    Ok(out)
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    match v.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => bail!("field \"{name}\" must be a string, found {other}"),
        None => bail!("missing field \"{name}\""),
    }
}

fn opt_field<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => field(v, name).map(Some),
    }
}

fn with_system(system: Option<&str>, mut rest: Vec<Message>) -> Vec<Message> {
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        rest.insert(0, Message::new("system", s));
    }
    rest
}

fn convert(v: &Value, format: Format, target: Target, f: &Fields) -> Result<Vec<Message>> {
    Ok(match format {
        Format::Messages => {
            let list = v
                .get(&f.messages)
                .and_then(Value::as_array)
                .with_context(|| format!("missing array \"{}\"", f.messages))?;
            list.iter().map(|m| Ok(Message::new(field(m, &f.role)?, field(m, &f.content)?))).collect::<Result<_>>()?
        }
        Format::PromptCompletion => with_system(
            opt_field(v, &f.system)?,
            vec![Message::new("user", field(v, &f.prompt)?), Message::new("assistant", field(v, &f.completion)?)],
        ),
        Format::Alpaca => {
            let instruction = field(v, &f.instruction)?;
            let user = match opt_field(v, &f.input)?.filter(|s| !s.trim().is_empty()) {
                Some(input) => format!("{instruction}\n\n{input}"),
                None => instruction.to_string(),
            };
            with_system(
                opt_field(v, &f.system)?,
                vec![Message::new("user", &user), Message::new("assistant", field(v, &f.output)?)],
            )
        }
        Format::Sharegpt => {
            let list = v
                .get(&f.conversations)
                .and_then(Value::as_array)
                .with_context(|| format!("missing array \"{}\"", f.conversations))?;
            list.iter()
                .map(|m| {
                    let role = match field(m, &f.from)? {
                        "human" | "user" => "user",
                        "gpt" | "assistant" | "model" => "assistant",
                        "system" => "system",
                        other => bail!("unknown speaker \"{other}\" (human, gpt, system)"),
                    };
                    Ok(Message::new(role, field(m, &f.value)?))
                })
                .collect::<Result<_>>()?
        }
        Format::Gsm8k => {
            let answer = field(v, "answer")?;
            let final_answer = gsm8k_final_answer(answer).context("the answer has no \"#### <number>\" line")?;
            let reply = match target {
                Target::Cot => strip_calculator_annotations(answer),
                Target::Label => final_answer,
            };
            vec![Message::new("user", field(v, "question")?), Message::new("assistant", &reply)]
        }
        Format::Esci => {
            let label = esci_label(field(v, "label")?)?;
            let mut product = field(v, "product_title")?.to_string();
            if let Some(d) = opt_field(v, "product_description")?.filter(|d| !d.is_empty()) {
                product = format!("{product}\n{d}");
            }
            let reply = match (target, opt_field(v, "rationale")?) {
                (Target::Cot, Some(r)) => format!("{r}\nAnswer: {label}"),
                (Target::Cot, None) => bail!("target \"cot\" needs a \"rationale\" field"),
                (Target::Label, _) => format!("Answer: {label}"),
            };
            vec![Message::new("user", &esci_prompt(field(v, "query")?, &product)), Message::new("assistant", &reply)]
        }
        Format::Medcalc => unreachable!("read from CSV above"),
    })
}

/// The number after `####` in a GSM8K answer, with thousands separators removed.
pub fn gsm8k_final_answer(answer: &str) -> Option<String> {
    let tail = answer.rsplit_once("####")?.1.trim();
    (!tail.is_empty()).then(|| tail.replace(',', ""))
}

/// GSM8K's calculator annotations `<<48/2=24>>` are tool traces, not text to imitate.
pub fn strip_calculator_annotations(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(start) = rest.find("<<") {
        match rest[start..].find(">>") {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + end + 2..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// The four ESCI labels, by letter or name.
pub fn esci_label(s: &str) -> Result<&'static str> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "e" | "exact" => "Exact",
        "s" | "substitute" => "Substitute",
        "c" | "complement" => "Complement",
        "i" | "irrelevant" => "Irrelevant",
        other => bail!("unknown ESCI label \"{other}\" (E, S, C, I or Exact, Substitute, Complement, Irrelevant)"),
    })
}

/// The ESCI question as the model is asked it (training and evaluation share it).
pub fn esci_prompt(query: &str, product: &str) -> String {
    format!(
        "A shopper searched for: {query}\n\nProduct:\n{product}\n\nHow relevant is the product to the search? \
         Reply with one of Exact, Substitute, Complement, Irrelevant, on a last line \"Answer: <label>\"."
    )
}
