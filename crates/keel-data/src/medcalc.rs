//! MedCalc-Bench (`test_data.csv`): rows, prompts, and the deterministic training / held-out
//! split by Note ID, stratified by calculator.
//!
//! Only the benchmark's test file is available here, so keel splits it: within each calculator
//! about [`HELD_OUT_FRACTION`] of the rows are held out, chosen by whole Note IDs in an order
//! fixed by a hash of the ID. A Note ID held out for one calculator is held out for all, so no
//! patient note is seen in training and evaluated on.

use crate::chat::Message;
use crate::dataset::Target;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The share of each calculator's rows held out for evaluation (whole Note IDs, so approximate).
pub const HELD_OUT_FRACTION: f64 = 0.2;

/// One row of `test_data.csv`: a patient note, a calculator question and its reference answer.
#[derive(Clone, Debug)]
pub struct MedcalcRow {
    /// The calculator's id (the stratum of the split).
    pub calculator_id: String,
    /// The calculator's name.
    pub calculator_name: String,
    /// `decimal`, `integer` or `date`.
    pub output_type: String,
    /// The patient note's id (the unit of the split).
    pub note_id: String,
    /// The patient note.
    pub note: String,
    /// What to compute from the note.
    pub question: String,
    /// The reference answer.
    pub answer: String,
    /// Lower limit of an accepted `decimal` answer.
    pub lower: String,
    /// Upper limit of an accepted `decimal` answer.
    pub upper: String,
    /// The benchmark's step-by-step solution (the chain-of-thought target).
    pub explanation: String,
    /// Whether the row belongs to the held-out part of keel's split.
    pub held_out: bool,
    /// `file:row N`, for error messages.
    pub source: String,
}

impl MedcalcRow {
    /// The question as the model is asked it (training and evaluation share it).
    pub fn prompt(&self) -> String {
        format!(
            "Here is a patient note:\n{}\n\nTask: {}\n\nThink step by step, then give the final answer on the last line as \"Answer: <value>\".",
            self.note.trim(),
            self.question.trim()
        )
    }

    /// The row as a training conversation: the prompt, and the explanation with the answer
    /// ([`Target::Cot`]) or the answer alone ([`Target::Label`]).
    pub fn messages(&self, target: Target) -> Vec<Message> {
        let reply = match target {
            Target::Cot => format!("{}\nAnswer: {}", self.explanation.trim(), self.answer.trim()),
            Target::Label => format!("Answer: {}", self.answer.trim()),
        };
        vec![Message::new("user", &self.prompt()), Message::new("assistant", &reply)]
    }
}

/// FNV-1a: a fixed, platform-independent hash to order Note IDs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Reads every row of `test_data.csv` and marks the held-out part.
pub fn read_medcalc(path: &Path) -> Result<Vec<MedcalcRow>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| {
        format!("cannot read {} (MedCalc-Bench test_data.csv; {})", path.display(), crate::fetch_hint("medcalc_bench"))
    })?;
    let headers = reader.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let col = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).with_context(|| format!("{}: no column \"{name}\"", path.display()))
    };
    let cols = [
        col("Calculator ID")?,
        col("Calculator Name")?,
        col("Output Type")?,
        col("Note ID")?,
        col("Patient Note")?,
        col("Question")?,
        col("Ground Truth Answer")?,
        col("Lower Limit")?,
        col("Upper Limit")?,
        col("Ground Truth Explanation")?,
    ];
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let source = format!("{}:row {}", path.display(), i + 2);
        let r = record.with_context(|| format!("{source}: malformed CSV"))?;
        let get = |c: usize| r.get(c).unwrap_or("").to_string();
        let row = MedcalcRow {
            calculator_id: get(cols[0]),
            calculator_name: get(cols[1]),
            output_type: get(cols[2]),
            note_id: get(cols[3]),
            note: get(cols[4]),
            question: get(cols[5]),
            answer: get(cols[6]),
            lower: get(cols[7]),
            upper: get(cols[8]),
            explanation: get(cols[9]),
            held_out: false,
            source,
        };
        if !["decimal", "integer", "date"].contains(&row.output_type.as_str()) {
            bail!("{}: unknown Output Type \"{}\"", row.source, row.output_type);
        }
        // An empty field would train on a target such as "Answer: " (or ask about no note).
        for (column, value) in [
            ("Patient Note", &row.note),
            ("Question", &row.question),
            ("Ground Truth Answer", &row.answer),
            ("Ground Truth Explanation", &row.explanation),
        ] {
            if value.trim().is_empty() {
                bail!("{}: \"{column}\" is empty; fill it in or delete the row", row.source);
            }
        }
        rows.push(row);
    }
    let held: BTreeSet<String> = held_out_notes(&rows);
    rows.iter_mut().for_each(|r| r.held_out = held.contains(&r.note_id));
    Ok(rows)
}

fn held_out_notes(rows: &[MedcalcRow]) -> BTreeSet<String> {
    let mut by_calc: BTreeMap<&str, Vec<&MedcalcRow>> = BTreeMap::new();
    rows.iter().for_each(|r| by_calc.entry(&r.calculator_id).or_default().push(r));
    let mut held = BTreeSet::new();
    for calc_rows in by_calc.values() {
        let want = (calc_rows.len() as f64 * HELD_OUT_FRACTION).ceil() as usize;
        let mut notes: Vec<&str> =
            calc_rows.iter().map(|r| r.note_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        notes.sort_by_key(|n| (fnv1a(n), n.to_string()));
        let mut count = calc_rows.iter().filter(|r| held.contains(&r.note_id)).count();
        for note in notes {
            if count >= want {
                break;
            }
            if held.insert(note.to_string()) {
                count += calc_rows.iter().filter(|r| r.note_id == note).count();
            }
        }
    }
    held
}
