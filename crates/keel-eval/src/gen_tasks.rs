//! Generation tasks: the model answers in its chat format (greedy), and a scorer judges the
//! response. GSM8K (0-shot chat or 8-shot; strict and flexible match), IFEval (the official
//! checkers), HumanEval (pass@1 in a sandbox), MedCalc-Bench (zero- or one-shot on the held-out
//! part of keel's split) and ESCI (label accuracy).

use crate::ifeval::{self, parse_ifeval_line};
use crate::scorers::{esci_answer, gsm8k_correct, gsm8k_flexible, gsm8k_strict, medcalc_answer_text, medcalc_correct};
use anyhow::{ensure, Context, Result};
use keel_data::chat::Message;
use keel_data::dataset::{read_examples, Fields, Format, Target};
use keel_data::medcalc::{read_medcalc, MedcalcRow};
use keel_infer::generate::{generate, GenOptions, Generation};
use keel_infer::pretrained::Pretrained;
use keel_infer::progress::Progress;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// One question of a generation task.
#[derive(Clone, Debug)]
pub struct GenItem {
    /// Where the item comes from (`file:line`, or the task's own key), for the samples file.
    pub source: String,
    /// The user turn the model answers (or, for few-shot completion, the whole prompt).
    pub prompt: String,
    /// What the scorer compares against (the reference answer, or a MedCalc row's fields).
    pub reference: Value,
    /// Worked-example turns placed before the question (one-shot prompting).
    pub shots: Vec<Message>,
}

/// One metric's judgement of one response: `passed` of `count` checks (1 of 1 or 0 of 1 for a
/// right or wrong answer; IFEval's instruction-level metrics count each instruction), and what
/// the scorer extracted from the response.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The metric's name in results (`accuracy`, `flexible_match`, `prompt_level_strict`, …).
    pub metric: String,
    /// What the scorer read from the response (an answer, a label, or `null`).
    pub extracted: Value,
    /// Checks passed.
    pub passed: u32,
    /// Checks made.
    pub count: u32,
}

impl Verdict {
    /// A right-or-wrong verdict: 1 of 1 when `ok`, else 0 of 1.
    pub fn binary(metric: &str, extracted: Value, ok: bool) -> Self {
        Verdict { metric: metric.to_string(), extracted, passed: ok as u32, count: 1 }
    }
}

/// The generation tasks keel evaluates, one variant per task name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenTask {
    /// GSM8K zero-shot in the chat format (strict `####` match and flexible last-number match).
    Gsm8k,
    /// GSM8K as a plain completion after 8 worked examples (the first 8 of the training split,
    /// "Question: …\nAnswer: …" as lm-evaluation-harness writes them), stopping at the next
    /// "Question:".
    Gsm8kEightShot,
    /// MedCalc-Bench zero-shot on the held-out part of keel's split.
    Medcalc,
    /// MedCalc-Bench with the benchmark's worked example of the same calculator as a first turn
    /// (`one_shot_finalized_explanation.json`).
    MedcalcOneShot,
    /// HumanEval pass@1 with greedy decoding (the generated code runs in a sandboxed `python3`).
    HumanEval,
    /// IFEval: the 541 prompts of `input_data.jsonl`, judged by the official checkers' rules
    /// (strict and loose, prompt and instruction level).
    IfEval,
    /// ESCI shopping relevance from `<data dir>/esci/esci.jsonl` in keel's ESCI format (the real
    /// data is not shipped here).
    Esci,
}

impl GenTask {
    /// The task of a name as `--tasks` gives it (`gsm8k`, `medcalc_1shot`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gsm8k" => Some(GenTask::Gsm8k),
            "gsm8k_8shot" => Some(GenTask::Gsm8kEightShot),
            "medcalc" => Some(GenTask::Medcalc),
            "medcalc_1shot" => Some(GenTask::MedcalcOneShot),
            "esci" => Some(GenTask::Esci),
            "humaneval" => Some(GenTask::HumanEval),
            "ifeval" => Some(GenTask::IfEval),
            _ => None,
        }
    }

    /// The task's name, as in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GenTask::Gsm8k => "gsm8k",
            GenTask::Gsm8kEightShot => "gsm8k_8shot",
            GenTask::Medcalc => "medcalc",
            GenTask::MedcalcOneShot => "medcalc_1shot",
            GenTask::Esci => "esci",
            GenTask::HumanEval => "humaneval",
            GenTask::IfEval => "ifeval",
        }
    }

    fn max_new_tokens(self) -> usize {
        match self {
            GenTask::Gsm8k | GenTask::Gsm8kEightShot => 256,
            GenTask::Medcalc | GenTask::MedcalcOneShot => 512,
            GenTask::Esci => 128,
            GenTask::HumanEval => 384,
            // lm-evaluation-harness's budget: essays of 300+ words must fit.
            GenTask::IfEval => 1280,
        }
    }

    /// The task's questions: GSM8K's test split, or MedCalc-Bench's held-out part.
    pub fn items(self, data_dir: &Path) -> Result<Vec<GenItem>> {
        let items = self.read_items(data_dir)?;
        // An empty data file would score 0 with n = 0 and look like a result.
        ensure!(!items.is_empty(), "the data of {} holds no items (is its file empty?)", self.name());
        Ok(items)
    }

    fn read_items(self, data_dir: &Path) -> Result<Vec<GenItem>> {
        Ok(match self {
            GenTask::Gsm8kEightShot => {
                let shots: String = read_jsonl(&data_dir.join("gsm8k/train.jsonl"))?
                    .iter()
                    .take(8)
                    .map(|v| {
                        format!(
                            "Question: {}\nAnswer: {}\n\n",
                            v["question"].as_str().unwrap_or_default(),
                            v["answer"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                read_jsonl(&data_dir.join("gsm8k/test.jsonl"))?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| GenItem {
                        source: format!("gsm8k/test.jsonl:{}", i + 1),
                        prompt: format!("{shots}Question: {}\nAnswer:", v["question"].as_str().unwrap_or_default()),
                        reference: v["answer"].clone(),
                        shots: vec![],
                    })
                    .collect()
            }
            GenTask::Gsm8k => {
                let path = data_dir.join("gsm8k/test.jsonl");
                read_examples(&path, Format::Gsm8k, Target::Cot, &Fields::default())?
                    .into_iter()
                    .map(|e| GenItem {
                        source: e.source,
                        prompt: e.messages[0].content.clone(),
                        reference: json!(e.messages[1].content),
                        shots: vec![],
                    })
                    .collect()
            }
            GenTask::Medcalc | GenTask::MedcalcOneShot => self.medcalc_items(data_dir)?,
            GenTask::HumanEval => crate::humaneval::read_tasks(data_dir)?
                .into_iter()
                .map(|t| GenItem {
                    source: t.task_id.clone(),
                    prompt: crate::humaneval::instruction(&t),
                    reference: json!({"prompt": t.prompt, "entry_point": t.entry_point, "test": t.test}),
                    shots: vec![],
                })
                .collect(),
            GenTask::IfEval => read_jsonl(&data_dir.join("ifeval/input_data.jsonl"))?
                .into_iter()
                .enumerate()
                .map(|(i, row)| -> Result<GenItem> {
                    // Parsed here so that a bad row fails before any generation.
                    let item = parse_ifeval_line(&row.to_string())
                        .with_context(|| format!("ifeval/input_data.jsonl:{}", i + 1))?;
                    Ok(GenItem {
                        source: format!("ifeval:{}", item.key),
                        prompt: item.prompt,
                        reference: row,
                        shots: vec![],
                    })
                })
                .collect::<Result<_>>()?,
            GenTask::Esci => {
                let path = data_dir.join("esci/esci.jsonl");
                read_examples(&path, Format::Esci, Target::Label, &Fields::default())
                    .context("ESCI's data is not shipped with the shared data; put it at <data dir>/esci/esci.jsonl in keel's ESCI format (README)")?
                    .into_iter()
                    .map(|e| GenItem {
                        source: e.source,
                        prompt: e.messages[0].content.clone(),
                        reference: json!(e.messages[1].content.trim_start_matches("Answer: ")),
                        shots: vec![],
                    })
                    .collect()
            }
        })
    }

    /// MedCalc-Bench's held-out rows, each with its calculator's worked example for the
    /// one-shot variant.
    fn medcalc_items(self, data_dir: &Path) -> Result<Vec<GenItem>> {
        let shots = if self == GenTask::MedcalcOneShot { one_shot_examples(data_dir)? } else { Default::default() };
        let mut items = Vec::new();
        for r in read_medcalc(&data_dir.join("medcalc_bench/test_data.csv"))?.into_iter().filter(|r| r.held_out) {
            let shot = match self {
                GenTask::MedcalcOneShot => {
                    let (note, response) = shots
                        .get(&r.calculator_id)
                        .with_context(|| format!("no worked example for calculator {}", r.calculator_id))?;
                    let example = MedcalcRow { note: note.clone(), ..r.clone() };
                    vec![Message::new("user", &example.prompt()), Message::new("assistant", response)]
                }
                _ => vec![],
            };
            items.push(GenItem {
                prompt: r.prompt(),
                reference: json!({"output_type": r.output_type, "answer": r.answer, "lower": r.lower, "upper": r.upper,
                    "calculator": r.calculator_name}),
                source: r.source,
                shots: shot,
            });
        }
        Ok(items)
    }

    /// The metric that stands for the task in a suite's mean score.
    pub fn primary_metric(self) -> &'static str {
        match self {
            GenTask::HumanEval => "pass_at_1",
            // Chat models rarely write "#### N" unprompted; the last number is their answer.
            GenTask::Gsm8k | GenTask::Gsm8kEightShot => "flexible_match",
            GenTask::Medcalc | GenTask::MedcalcOneShot | GenTask::Esci => "accuracy",
            GenTask::IfEval => "prompt_level_strict",
        }
    }

    /// Scores of one response, one verdict per metric.
    pub fn score(self, item: &GenItem, response: &str) -> Result<Vec<Verdict>> {
        let v = Verdict::binary;
        Ok(match self {
            GenTask::HumanEval => {
                let f = |k: &str| item.reference[k].as_str().unwrap_or_default().to_string();
                let task = crate::humaneval::HumanEvalTask {
                    task_id: item.source.clone(),
                    prompt: f("prompt"),
                    entry_point: f("entry_point"),
                    test: f("test"),
                };
                let program = crate::humaneval::program(&task, response);
                let ok = crate::humaneval::passes(&program, std::time::Duration::from_secs(10))?;
                vec![v("pass_at_1", json!(program), ok)]
            }
            GenTask::Gsm8k | GenTask::Gsm8kEightShot => {
                let reference = item.reference.as_str().unwrap_or_default();
                let (strict, flexible) = (gsm8k_strict(response), gsm8k_flexible(response));
                vec![
                    v("strict_match", json!(strict), gsm8k_correct(strict.as_deref(), reference)),
                    v("flexible_match", json!(flexible), gsm8k_correct(flexible.as_deref(), reference)),
                ]
            }
            GenTask::Medcalc | GenTask::MedcalcOneShot => {
                let f = |k: &str| item.reference[k].as_str().unwrap_or_default().to_string();
                let ok = medcalc_correct(&f("output_type"), &f("answer"), &f("lower"), &f("upper"), response);
                vec![v("accuracy", json!(medcalc_answer_text(response)), ok)]
            }
            GenTask::IfEval => {
                let row = parse_ifeval_line(&item.reference.to_string())?;
                let verdict = ifeval::score(&row, response);
                let count = |v: &[bool]| v.iter().filter(|&&b| b).count() as u32;
                let n = row.instructions.len() as u32;
                vec![
                    v("prompt_level_strict", json!(verdict.strict), verdict.prompt_strict()),
                    Verdict {
                        metric: "inst_level_strict".into(),
                        extracted: Value::Null,
                        passed: count(&verdict.strict),
                        count: n,
                    },
                    v("prompt_level_loose", json!(verdict.loose), verdict.prompt_loose()),
                    Verdict {
                        metric: "inst_level_loose".into(),
                        extracted: Value::Null,
                        passed: count(&verdict.loose),
                        count: n,
                    },
                ]
            }
            GenTask::Esci => {
                let label = esci_answer(response);
                let ok = label.as_deref() == item.reference.as_str();
                vec![v("accuracy", json!(label), ok)]
            }
        })
    }
}

/// Generates greedy answers for `items`, `batch` prompts at a time; `max_new_tokens` of 0 uses
/// the task's default.
pub fn run(
    pre: &Pretrained,
    task: GenTask,
    items: &[GenItem],
    batch: usize,
    max_new_tokens: usize,
) -> Result<Vec<Generation>> {
    let mut opts = GenOptions {
        max_new_tokens: if max_new_tokens > 0 { max_new_tokens } else { task.max_new_tokens() },
        ..GenOptions::default()
    };
    // Few-shot completion: the model's next "Question:" ends its answer.
    let plain = task == GenTask::Gsm8kEightShot;
    if plain {
        opts.stop = vec!["Question:".into(), "</s>".into(), "<|im_end|>".into()];
    }
    opts.batch = batch.max(1);
    generate_answers(pre, task.name(), items, !plain, &opts)
}

/// Greedy answers to `items`: each a chat turn after its shots (`chat`), or its prompt as plain
/// text after BOS.
pub fn generate_answers(
    pre: &Pretrained,
    name: &str,
    items: &[GenItem],
    chat: bool,
    opts: &GenOptions,
) -> Result<Vec<Generation>> {
    let prompts = prompt_ids(pre, items, chat)?;
    let mut progress = Progress::new(name, items.len());
    generate(pre, &prompts, opts, |_, g, finished| {
        if finished {
            progress.advance(1, g.ids.len());
        }
    })
}

/// The token ids each item's prompt is generated from.
pub fn prompt_ids(pre: &Pretrained, items: &[GenItem], chat: bool) -> Result<Vec<Vec<u32>>> {
    if !chat {
        return items.iter().map(|it| pre.tokenizer.encode(&it.prompt, true)).collect();
    }
    let template = pre.chat_template.as_ref().context("generation tasks need a chat model with a chat template")?;
    items
        .iter()
        .map(|it| {
            let mut messages = it.shots.clone();
            messages.push(Message::new("user", &it.prompt));
            pre.tokenizer.encode(&template.render(&messages, true)?, true)
        })
        .collect()
}

/// MedCalc-Bench's worked example per calculator id: (patient note, response written as keel's
/// target: the step-by-step thinking, then `Answer: <value>`).
fn one_shot_examples(data_dir: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let path = data_dir.join("medcalc_bench/one_shot_finalized_explanation.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} ({})", path.display(), keel_data::fetch_hint("medcalc_bench")))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let obj =
        v.as_object().with_context(|| format!("{}: expected an object keyed by calculator id", path.display()))?;
    obj.iter()
        .map(|(id, e)| {
            let note = e["Patient Note"]
                .as_str()
                .with_context(|| format!("{}: calculator {id} has no \"Patient Note\"", path.display()))?;
            let thinking = e["Response"]["step_by_step_thinking"].as_str().unwrap_or_default();
            let answer = match &e["Response"]["answer"] {
                Value::String(s) => s.clone(),
                Value::Null => anyhow::bail!("{}: calculator {id} has no answer", path.display()),
                other => other.to_string(),
            };
            Ok((id.clone(), (note.to_string(), format!("{}\nAnswer: {answer}", thinking.trim()))))
        })
        .collect()
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let values = keel_data::jsonl::read_values(path, &keel_data::fetch_hint(""))?;
    Ok(values.into_iter().map(|(_, v)| v).collect())
}
