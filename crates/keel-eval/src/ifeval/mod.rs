//! IFEval (Zhou et al., 2023, "Instruction-Following Evaluation for Large Language Models"):
//! scoring a response against the verifiable instructions of one prompt, rule for rule as the
//! official checkers do (google-research `instruction_following_eval`, carried over unchanged
//! into lm-evaluation-harness as `lm_eval/tasks/ifeval/`: `instructions.py`,
//! `instructions_util.py`, and the strict/loose drivers of `evaluation_main.py` / `utils.py`).
//!
//! [`read_ifeval`] parses `input_data.jsonl`; each instruction becomes one [`Instruction`] variant
//! with its arguments typed and validated once. [`score`] gives an [`IfevalVerdict`] per prompt,
//! strict and loose per instruction, and [`IfevalScores::from_verdicts`] the four numbers
//! lm-eval reports: prompt-level and instruction-level strict and loose accuracy.
//!
//! # What the official code does, and how keel matches it
//!
//! * **Strict**: an instruction passes when the response is not blank (Python `strip()`) and the
//!   checker accepts it. **Loose**: the same on eight variants (the response; it with the first
//!   line, the last line, or both removed, each `strip()`ped; and those four with every `*`
//!   deleted); it passes when any non-blank variant passes ([`loose_variants`]).
//! * Python semantics are kept where they decide a verdict: `str.strip`/`split` whitespace (which
//!   includes U+001C..U+001F), `str.isupper`/`islower` (titlecase letters count as neither),
//!   `str.lower` (full Unicode mapping), the stdlib `re` meaning of `\s`, `\w` and `\b` in the
//!   checkers' own regexes, and the `regex`-module meaning that NLTK uses (Rust's `\w`, `\s`,
//!   `\d` equal those on every code point assigned in Python's Unicode database).
//! * `json_format` accepts exactly what Python's `json.loads` accepts (NaN and Infinity, numbers
//!   of any size, lone surrogate escapes; no integer literal over 4300 digits), after the
//!   official stripping of ```` ```json ````/```` ```Json ````/```` ```JSON ````/```` ``` ````
//!   fences.
//! * **Sentences** (`length_constraints:number_sentences`) are counted by NLTK's Punkt sentence
//!   tokenizer with NLTK's English model, and **capitalized words**
//!   (`change_case:capital_word_frequency`) by `nltk.word_tokenize` (Punkt, then NLTK's improved
//!   Treebank word tokenizer). Both are ported here from NLTK 3.10 (the version pip installs for
//!   lm-eval, which requires nltk >= 3.9.1): [`count_sentences`], [`word_tokenize`]. The English
//!   model is NLTK's `punkt_tab/english` data, kept in `punkt_english.txt` beside this file.
//!   (Older NLTK releases differ on rare inputs; NLTK 3.10, for one, treats curly quotes and
//!   guillemets after a period like ASCII quotes. On GPT-4's 541 responses published with IFEval,
//!   the verdicts of 2023 and of NLTK 3.10 agree on every instruction.)
//!   `length_constraints:number_words` counts `\w+` runs as NLTK's `RegexpTokenizer` does.
//! * **Language** (`language:response_language`, and the English test of
//!   `change_case:english_capital`/`english_lowercase`): the official code calls Python
//!   `langdetect.detect` and counts a detection error (text without letters) as a pass. keel uses
//!   the [`langdetect`] crate, a port of Python langdetect 1.0.9 that reproduces it bit for bit:
//!   the same 55 language profiles (all 22 languages of the data, plus English), the same
//!   normalisation and the same Mersenne-Twister random walk. It returns the same ISO 639-1 codes
//!   (`zh-cn`/`zh-tw` for Chinese), so no mapping is needed. Python langdetect draws a fresh
//!   random seed per call unless `DetectorFactory.seed` is set; keel fixes the seed to 0 (as one
//!   would set `DetectorFactory.seed = 0`) and reproduces CPython 3.11's arithmetic, so a verdict
//!   never changes between runs. The crates considered and not taken: `whatlang` and `lingua`
//!   use other models and algorithms, so their answers differ from langdetect's on short or mixed
//!   text, and `lingua` lacks Kannada and Nepali; `whichlang` covers 16 languages (none of the
//!   Indic ones). One side effect: the crate turns on `serde_json`'s `preserve_order` feature in
//!   every build that includes keel-eval (JSON objects keep insertion order).
//!
//! # Where keel departs from the official code, and why
//!
//! * Arguments the official code would replace with a *random* value (a missing or negative
//!   number, a missing relation, keyword or marker, `nth_paragraph` outside `1..=num_paragraphs`)
//!   are errors here: a score must not depend on chance. `null` values (as in the Hugging Face
//!   copy of the data) mean "not given". (lm-eval's driver also drops arguments equal to 0 or
//!   `""` before building an instruction, so they too become random there; keel takes a 0 as
//!   given, as Google's driver does. No row of the data has one.)
//! * `keywords:letter_frequency` with a `letter` that is not an ASCII letter: the official code
//!   then checks a random letter (rows 1122 and 1129 of the data ask for `#` and `!`). keel counts
//!   the given character, which is what those prompts ask for.
//! * Keywords, forbidden words, section splitters and postscript markers are regular expressions
//!   in the official code. When they are plain text (every one in the data is), keel matches them
//!   literally with Python's case-insensitive rules (including `i` ~ `İ`/`ı`); otherwise it
//!   compiles them with Rust's `regex`, whose syntax agrees with Python's on common constructs.
//! * Deeply nested JSON: Python raises `RecursionError` (the run crashes) past ~1000 levels;
//!   keel judges such text by the JSON grammar alone.
//! * Unicode versions: Python 3.11 knows Unicode 14, Rust a later one; characters assigned since
//!   then may be classified differently.
//!
//! # Layout
//!
//! This file holds the items, their parsing and the scoring drivers. The rest, one concern each:
//! `instructions` (the 25 instructions and their arguments), `checkers` (what each instruction
//! checks), `patterns` (keywords and markers as regexes), `pystr` (Python's string semantics),
//! `pyjson` (what Python's `json.loads` accepts), `treebank` (NLTK's word tokenizer) and `punkt`
//! (NLTK's Punkt sentence tokenizer with its English model).

mod checkers;
mod instructions;
mod patterns;
mod punkt;
mod pyjson;
mod pystr;
mod treebank;

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{Map, Value};

pub use checkers::{count_words, detect_language};
pub use instructions::{Instruction, Relation, INSTRUCTION_IDS};
pub use patterns::Pattern;
pub use punkt::{count_sentences, sentences};
pub use pyjson::python_json_valid;
pub use pystr::{py_islower, py_isspace, py_isupper, py_strip};
pub use treebank::{count_capital_words, word_tokenize};

// ---------------------------------------------------------------------------------------------
// Items and parsing
// ---------------------------------------------------------------------------------------------
/// One IFEval prompt with its instructions.
#[derive(Clone, Debug)]
pub struct IfevalItem {
    /// The prompt's `key` in `input_data.jsonl`.
    pub key: i64,
    /// The prompt the model answers.
    pub prompt: String,
    /// The instructions the response must follow, in the data's order.
    pub instructions: Vec<Instruction>,
}

/// Parses one line of `input_data.jsonl` (`key`, `prompt`, `instruction_id_list`, `kwargs`).
pub fn parse_ifeval_line(line: &str) -> Result<IfevalItem> {
    let v: Value = serde_json::from_str(line).context("not a JSON object")?;
    let o = v.as_object().context("not a JSON object")?;
    let key = o.get("key").and_then(Value::as_i64).context("no integer `key`")?;
    let prompt = o.get("prompt").and_then(Value::as_str).context("no string `prompt`")?.to_string();
    let ids = o.get("instruction_id_list").and_then(Value::as_array).context("no list `instruction_id_list`")?;
    let kwargs = o.get("kwargs").and_then(Value::as_array).context("no list `kwargs`")?;
    ensure!(ids.len() == kwargs.len(), "{} instruction ids but {} kwargs", ids.len(), kwargs.len());
    let mut instructions = Vec::with_capacity(ids.len());
    for (i, (id, kw)) in ids.iter().zip(kwargs).enumerate() {
        let id = id.as_str().with_context(|| format!("instruction {}: the id is not a string", i + 1))?;
        let empty = Map::new();
        let kw = match kw {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => bail!("instruction {} ({id}): kwargs is not an object", i + 1),
        };
        instructions.push(Instruction::from_kwargs(id, kw).with_context(|| format!("instruction {} ({id})", i + 1))?);
    }
    Ok(IfevalItem { key, prompt, instructions })
}

/// Reads IFEval's `input_data.jsonl`. Blank lines are skipped; any other line that does not
/// parse, names an unknown instruction or lacks a required argument is an error naming
/// `file:line`.
pub fn read_ifeval(path: &Path) -> Result<Vec<IfevalItem>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in keel_data::jsonl::lines(path, &bytes)? {
        items.push(parse_ifeval_line(&line).map_err(|e| anyhow!("{}:{n}: {e:#}", path.display()))?);
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------------------------

/// Strict and loose verdicts of one response, one entry per instruction of the item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfevalVerdict {
    /// Per instruction: the response is not blank and passes.
    pub strict: Vec<bool>,
    /// Per instruction: some non-blank variant of [`loose_variants`] passes.
    pub loose: Vec<bool>,
}

impl IfevalVerdict {
    /// Prompt-level strict: every instruction passes strictly.
    pub fn prompt_strict(&self) -> bool {
        self.strict.iter().all(|&b| b)
    }

    /// Prompt-level loose: every instruction passes loosely.
    pub fn prompt_loose(&self) -> bool {
        self.loose.iter().all(|&b| b)
    }
}

/// Scores `response` against every instruction of `item`, strictly and loosely.
pub fn score(item: &IfevalItem, response: &str) -> IfevalVerdict {
    let variants = loose_variants(response);
    IfevalVerdict {
        strict: item.instructions.iter().map(|i| i.check_strict(response)).collect(),
        loose: item.instructions.iter().map(|i| variants.iter().any(|r| i.check_strict(r))).collect(),
    }
}

/// The four accuracies lm-eval reports for IFEval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IfevalScores {
    /// Prompts scored.
    pub prompts: usize,
    /// Instructions scored, over all prompts.
    pub instructions: usize,
    /// Fraction of prompts whose instructions all pass strictly.
    pub prompt_level_strict: f64,
    /// Fraction of prompts whose instructions all pass loosely.
    pub prompt_level_loose: f64,
    /// Fraction of all instructions (over all prompts) that pass strictly.
    pub inst_level_strict: f64,
    /// Fraction of all instructions that pass loosely.
    pub inst_level_loose: f64,
}

impl IfevalScores {
    /// Aggregates verdicts as lm-eval does: prompt-level means over prompts, instruction-level
    /// means over the flattened instructions. Empty input gives zeros.
    pub fn from_verdicts(verdicts: &[IfevalVerdict]) -> IfevalScores {
        let frac = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let prompts = verdicts.len();
        let instructions: usize = verdicts.iter().map(|v| v.strict.len()).sum();
        let count = |f: fn(&IfevalVerdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
        let inst = |f: fn(&IfevalVerdict) -> &Vec<bool>| {
            verdicts.iter().map(|v| f(v).iter().filter(|&&b| b).count()).sum::<usize>()
        };
        IfevalScores {
            prompts,
            instructions,
            prompt_level_strict: frac(count(IfevalVerdict::prompt_strict), prompts),
            prompt_level_loose: frac(count(IfevalVerdict::prompt_loose), prompts),
            inst_level_strict: frac(inst(|v| &v.strict), instructions),
            inst_level_loose: frac(inst(|v| &v.loose), instructions),
        }
    }
}

/// The eight responses loose scoring tries, in the official order: the response, it without
/// `*`, without its first line, without its last line, without both, and the last three
/// without `*` (each line-removed variant is `strip()`ped, as officially).
pub fn loose_variants(response: &str) -> [String; 8] {
    let lines: Vec<&str> = response.split('\n').collect();
    let n = lines.len();
    let join = |ls: &[&str]| py_strip(&ls.join("\n")).to_string();
    let remove_first = join(&lines[1..]);
    let remove_last = join(&lines[..n - 1]);
    let remove_both = if n >= 2 { join(&lines[1..n - 1]) } else { String::new() };
    let unstar = |s: &str| s.replace('*', "");
    [
        response.to_string(),
        unstar(response),
        remove_first.clone(),
        remove_last.clone(),
        remove_both.clone(),
        unstar(&remove_first),
        unstar(&remove_last),
        unstar(&remove_both),
    ]
}
