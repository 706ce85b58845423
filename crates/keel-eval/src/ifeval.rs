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
//!   model is NLTK's `punkt_tab/english` data, kept in `ifeval_punkt_english.txt`. (Older NLTK
//!   releases differ on rare inputs; NLTK 3.10, for one, treats curly quotes and guillemets after
//!   a period like ASCII quotes. On GPT-4's 541 responses published with IFEval, the verdicts of
//!   2023 and of NLTK 3.10 agree on every instruction.)
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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use regex::Regex;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Items, instructions, parsing
// ---------------------------------------------------------------------------------------------

/// One IFEval prompt with its instructions.
#[derive(Clone, Debug)]
pub struct IfevalItem {
    pub key: i64,
    pub prompt: String,
    pub instructions: Vec<Instruction>,
}

/// `"less than"` (count < threshold) or `"at least"` (count >= threshold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    LessThan,
    AtLeast,
}

impl Relation {
    fn holds(self, count: usize, threshold: usize) -> bool {
        match self {
            Relation::LessThan => count < threshold,
            Relation::AtLeast => count >= threshold,
        }
    }
}

/// A keyword, forbidden word, section splitter or postscript marker: the text given in the data
/// and the regex keel matches it with (see the module notes).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    regex: Regex,
    /// Plain text (no regex syntax): matched literally, with Python-`re` word boundaries where the
    /// official pattern has `\b`.
    literal: bool,
}

/// One verifiable instruction with its arguments, one variant per instruction id of IFEval.
#[derive(Clone, Debug)]
pub enum Instruction {
    /// `keywords:existence`: every keyword occurs (case-insensitive).
    KeywordsExistence { keywords: Vec<Pattern> },
    /// `keywords:frequency`: the number of (non-overlapping, case-insensitive) occurrences.
    KeywordsFrequency { keyword: Pattern, frequency: usize, relation: Relation },
    /// `keywords:forbidden_words`: no word occurs between word boundaries (case-insensitive).
    ForbiddenWords { words: Vec<Pattern> },
    /// `keywords:letter_frequency`: occurrences of `letter` in the lower-cased response.
    LetterFrequency { letter: char, frequency: usize, relation: Relation },
    /// `language:response_language`: langdetect's answer equals `language` (ISO 639-1).
    ResponseLanguage { language: String },
    /// `length_constraints:number_sentences`: Punkt sentences.
    NumberSentences { num_sentences: usize, relation: Relation },
    /// `length_constraints:number_paragraphs`: exactly this many `***`-separated paragraphs.
    NumberParagraphs { num_paragraphs: usize },
    /// `length_constraints:number_words`: `\w+` runs.
    NumberWords { num_words: usize, relation: Relation },
    /// `length_constraints:nth_paragraph_first_word`: `\n\n`-separated paragraphs, and the first
    /// word of paragraph `nth_paragraph` (1-based).
    NthParagraphFirstWord { num_paragraphs: usize, nth_paragraph: usize, first_word: String },
    /// `detectable_content:number_placeholders`: at least this many `[...]`.
    NumberPlaceholders { num_placeholders: usize },
    /// `detectable_content:postscript`: a postscript opened by the marker (`P.S.`, `P.P.S`).
    Postscript { marker: Pattern },
    /// `detectable_format:number_bullet_lists`: exactly this many `*` or `-` bullet lines.
    NumberBulletLists { num_bullets: usize },
    /// `detectable_format:constrained_response`: contains "My answer is yes./no./maybe.".
    ConstrainedResponse,
    /// `detectable_format:number_highlighted_sections`: at least this many `*...*` / `**...**`.
    NumberHighlightedSections { num_highlights: usize },
    /// `detectable_format:multiple_sections`: at least this many `<splitter> <number>` marks.
    MultipleSections { section_spliter: Pattern, num_sections: usize },
    /// `detectable_format:json_format`: the whole response (fences removed) is JSON.
    JsonFormat,
    /// `detectable_format:title`: a non-blank `<<title>>`.
    Title,
    /// `combination:two_responses`: two different responses separated by `******`.
    TwoResponses,
    /// `combination:repeat_prompt`: starts with `prompt_to_repeat` (case-insensitive).
    RepeatPrompt { prompt_to_repeat: String },
    /// `startend:end_checker`: ends with `end_phrase` (case-insensitive, closing `"` ignored).
    EndChecker { end_phrase: String },
    /// `change_case:capital_word_frequency`: all-capital tokens of `nltk.word_tokenize`.
    CapitalWordFrequency { capital_frequency: usize, capital_relation: Relation },
    /// `change_case:english_capital`: all capitals, and langdetect says English.
    EnglishCapital,
    /// `change_case:english_lowercase`: all lower case, and langdetect says English.
    EnglishLowercase,
    /// `punctuation:no_comma`: no `,`.
    NoComma,
    /// `startend:quotation`: wrapped in double quotes.
    Quotation,
}

/// The 25 instruction ids of IFEval.
pub const INSTRUCTION_IDS: [&str; 25] = [
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
];

/// The ISO 639-1 codes the official code accepts for `language:response_language`
/// (`instructions_util.LANGUAGE_CODES`; any other code makes it fail to build the instruction).
const LANGUAGE_CODES: [&str; 30] = [
    "en", "es", "pt", "ar", "hi", "fr", "ru", "de", "ja", "it", "bn", "uk", "th", "ur", "ta", "te", "bg", "ko", "pl",
    "he", "fa", "vi", "ne", "sw", "kn", "mr", "gu", "pa", "ml", "fi",
];

/// The accepted answers of `detectable_format:constrained_response`.
const CONSTRAINED_RESPONSES: [&str; 3] = ["My answer is yes.", "My answer is no.", "My answer is maybe."];

/// The argument names each instruction takes (`get_instruction_args_keys`).
fn argument_names(id: &str) -> &'static [&'static str] {
    match id {
        "keywords:existence" => &["keywords"],
        "keywords:frequency" => &["keyword", "frequency", "relation"],
        "keywords:forbidden_words" => &["forbidden_words"],
        "keywords:letter_frequency" => &["letter", "let_frequency", "let_relation"],
        "language:response_language" => &["language"],
        "length_constraints:number_sentences" => &["num_sentences", "relation"],
        "length_constraints:number_paragraphs" => &["num_paragraphs"],
        "length_constraints:number_words" => &["num_words", "relation"],
        "length_constraints:nth_paragraph_first_word" => &["num_paragraphs", "nth_paragraph", "first_word"],
        "detectable_content:number_placeholders" => &["num_placeholders"],
        "detectable_content:postscript" => &["postscript_marker"],
        "detectable_format:number_bullet_lists" => &["num_bullets"],
        "detectable_format:number_highlighted_sections" => &["num_highlights"],
        "detectable_format:multiple_sections" => &["section_spliter", "num_sections"],
        "combination:repeat_prompt" => &["prompt_to_repeat"],
        "startend:end_checker" => &["end_phrase"],
        "change_case:capital_word_frequency" => &["capital_frequency", "capital_relation"],
        _ => &[],
    }
}

struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl Args<'_> {
    fn value(&self, name: &str) -> Result<&Value> {
        match self.map.get(name) {
            Some(Value::Null) | None => bail!("missing argument `{name}`"),
            Some(v) => Ok(v),
        }
    }

    fn count(&self, name: &str) -> Result<usize> {
        let v = self.value(name)?;
        let n = match v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15).map(|f| f as u64)),
            _ => None,
        };
        let n = n.with_context(|| format!("argument `{name}` must be a non-negative integer, not {v}"))?;
        usize::try_from(n).with_context(|| format!("argument `{name}` is too large"))
    }

    fn text(&self, name: &str) -> Result<&str> {
        let v = self.value(name)?;
        v.as_str().with_context(|| format!("argument `{name}` must be a string, not {v}"))
    }

    /// A string argument after Python's `strip()`, which must leave something.
    fn stripped(&self, name: &str) -> Result<String> {
        let s = py_strip(self.text(name)?);
        ensure_nonempty(s, name)?;
        Ok(s.to_string())
    }

    fn relation(&self, name: &str) -> Result<Relation> {
        match self.text(name)? {
            "less than" => Ok(Relation::LessThan),
            "at least" => Ok(Relation::AtLeast),
            other => bail!("argument `{name}` must be \"less than\" or \"at least\", not {other:?}"),
        }
    }

    fn words(&self, name: &str) -> Result<Vec<String>> {
        let v = self.value(name)?;
        let list = v.as_array().with_context(|| format!("argument `{name}` must be a list of strings, not {v}"))?;
        ensure!(!list.is_empty(), "argument `{name}` is an empty list");
        list.iter()
            .map(|w| {
                w.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("argument `{name}` must be a list of strings, not {v}"))
            })
            .collect()
    }
}

fn ensure_nonempty(s: &str, name: &str) -> Result<()> {
    ensure!(!s.is_empty(), "argument `{name}` is empty");
    Ok(())
}

impl Instruction {
    /// Builds an instruction from its id and its `kwargs` object (`null` values mean "not given").
    pub fn from_kwargs(id: &str, kwargs: &Map<String, Value>) -> Result<Instruction> {
        ensure!(INSTRUCTION_IDS.contains(&id), "unknown instruction id {id:?}");
        let names = argument_names(id);
        for (k, v) in kwargs {
            ensure!(v.is_null() || names.contains(&k.as_str()), "unexpected argument `{k}` for {id}");
        }
        let a = Args { map: kwargs };
        Ok(match id {
            "keywords:existence" => Instruction::KeywordsExistence {
                keywords: a.words("keywords")?.iter().map(|w| Pattern::keyword(w)).collect::<Result<_>>()?,
            },
            "keywords:frequency" => Instruction::KeywordsFrequency {
                keyword: Pattern::keyword(&a.stripped("keyword")?)?,
                frequency: a.count("frequency")?,
                relation: a.relation("relation")?,
            },
            "keywords:forbidden_words" => {
                let mut words = a.words("forbidden_words")?;
                words.sort();
                words.dedup();
                Instruction::ForbiddenWords {
                    words: words.iter().map(|w| Pattern::bounded_word(w)).collect::<Result<_>>()?,
                }
            }
            "keywords:letter_frequency" => {
                let raw = a.text("letter")?;
                let mut chars = raw.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    bail!("argument `letter` must be one character, not {raw:?}");
                };
                // Python: `letter.strip().lower()`; a non-letter is counted as given (module notes).
                ensure!(!py_isspace(c), "argument `letter` is blank");
                let letter = if c.is_ascii_alphabetic() { c.to_ascii_lowercase() } else { c };
                Instruction::LetterFrequency {
                    letter,
                    frequency: a.count("let_frequency")?,
                    relation: a.relation("let_relation")?,
                }
            }
            "language:response_language" => {
                let language = a.text("language")?;
                ensure!(
                    LANGUAGE_CODES.contains(&language),
                    "argument `language`: {language:?} is not one of IFEval's language codes"
                );
                Instruction::ResponseLanguage { language: language.to_string() }
            }
            "length_constraints:number_sentences" => Instruction::NumberSentences {
                num_sentences: a.count("num_sentences")?,
                relation: a.relation("relation")?,
            },
            "length_constraints:number_paragraphs" => {
                Instruction::NumberParagraphs { num_paragraphs: a.count("num_paragraphs")? }
            }
            "length_constraints:number_words" => {
                Instruction::NumberWords { num_words: a.count("num_words")?, relation: a.relation("relation")? }
            }
            "length_constraints:nth_paragraph_first_word" => {
                let num_paragraphs = a.count("num_paragraphs")?;
                let nth_paragraph = a.count("nth_paragraph")?;
                ensure!(
                    (1..=num_paragraphs).contains(&nth_paragraph),
                    "argument `nth_paragraph` ({nth_paragraph}) must lie in 1..={num_paragraphs} (`num_paragraphs`)"
                );
                let first_word = a.text("first_word")?.to_lowercase();
                Instruction::NthParagraphFirstWord { num_paragraphs, nth_paragraph, first_word }
            }
            "detectable_content:number_placeholders" => {
                Instruction::NumberPlaceholders { num_placeholders: a.count("num_placeholders")? }
            }
            "detectable_content:postscript" => {
                Instruction::Postscript { marker: Pattern::postscript(&a.stripped("postscript_marker")?)? }
            }
            "detectable_format:number_bullet_lists" => {
                Instruction::NumberBulletLists { num_bullets: a.count("num_bullets")? }
            }
            "detectable_format:constrained_response" => Instruction::ConstrainedResponse,
            "detectable_format:number_highlighted_sections" => {
                Instruction::NumberHighlightedSections { num_highlights: a.count("num_highlights")? }
            }
            "detectable_format:multiple_sections" => Instruction::MultipleSections {
                section_spliter: Pattern::section(&a.stripped("section_spliter")?)?,
                num_sections: a.count("num_sections")?,
            },
            "detectable_format:json_format" => Instruction::JsonFormat,
            "detectable_format:title" => Instruction::Title,
            "combination:two_responses" => Instruction::TwoResponses,
            "combination:repeat_prompt" => {
                let prompt_to_repeat = a.text("prompt_to_repeat")?;
                ensure_nonempty(prompt_to_repeat, "prompt_to_repeat")?;
                Instruction::RepeatPrompt { prompt_to_repeat: prompt_to_repeat.to_string() }
            }
            "startend:end_checker" => Instruction::EndChecker { end_phrase: a.stripped("end_phrase")? },
            "change_case:capital_word_frequency" => Instruction::CapitalWordFrequency {
                capital_frequency: a.count("capital_frequency")?,
                capital_relation: a.relation("capital_relation")?,
            },
            "change_case:english_capital" => Instruction::EnglishCapital,
            "change_case:english_lowercase" => Instruction::EnglishLowercase,
            "punctuation:no_comma" => Instruction::NoComma,
            "startend:quotation" => Instruction::Quotation,
            _ => unreachable!("checked against INSTRUCTION_IDS"),
        })
    }

    /// The IFEval id of this instruction, e.g. `"keywords:frequency"`.
    pub fn id(&self) -> &'static str {
        match self {
            Instruction::KeywordsExistence { .. } => "keywords:existence",
            Instruction::KeywordsFrequency { .. } => "keywords:frequency",
            Instruction::ForbiddenWords { .. } => "keywords:forbidden_words",
            Instruction::LetterFrequency { .. } => "keywords:letter_frequency",
            Instruction::ResponseLanguage { .. } => "language:response_language",
            Instruction::NumberSentences { .. } => "length_constraints:number_sentences",
            Instruction::NumberParagraphs { .. } => "length_constraints:number_paragraphs",
            Instruction::NumberWords { .. } => "length_constraints:number_words",
            Instruction::NthParagraphFirstWord { .. } => "length_constraints:nth_paragraph_first_word",
            Instruction::NumberPlaceholders { .. } => "detectable_content:number_placeholders",
            Instruction::Postscript { .. } => "detectable_content:postscript",
            Instruction::NumberBulletLists { .. } => "detectable_format:number_bullet_lists",
            Instruction::ConstrainedResponse => "detectable_format:constrained_response",
            Instruction::NumberHighlightedSections { .. } => "detectable_format:number_highlighted_sections",
            Instruction::MultipleSections { .. } => "detectable_format:multiple_sections",
            Instruction::JsonFormat => "detectable_format:json_format",
            Instruction::Title => "detectable_format:title",
            Instruction::TwoResponses => "combination:two_responses",
            Instruction::RepeatPrompt { .. } => "combination:repeat_prompt",
            Instruction::EndChecker { .. } => "startend:end_checker",
            Instruction::CapitalWordFrequency { .. } => "change_case:capital_word_frequency",
            Instruction::EnglishCapital => "change_case:english_capital",
            Instruction::EnglishLowercase => "change_case:english_lowercase",
            Instruction::NoComma => "punctuation:no_comma",
            Instruction::Quotation => "startend:quotation",
        }
    }

    /// The official `check_following(response)`. (The official driver never gives a checker the
    /// prompt: `combination:repeat_prompt` carries its own `prompt_to_repeat`.) This is the raw
    /// check; strict scoring also fails a blank response, see [`Instruction::check_strict`].
    pub fn check(&self, response: &str) -> bool {
        let value = response;
        match self {
            Instruction::KeywordsExistence { keywords } => keywords.iter().all(|k| k.regex.is_match(value)),
            Instruction::KeywordsFrequency { keyword, frequency, relation } => {
                relation.holds(keyword.regex.find_iter(value).count(), *frequency)
            }
            Instruction::ForbiddenWords { words } => !words.iter().any(|w| w.found_between_boundaries(value)),
            Instruction::LetterFrequency { letter, frequency, relation } => {
                relation.holds(value.to_lowercase().chars().filter(|c| c == letter).count(), *frequency)
            }
            Instruction::ResponseLanguage { language } => detect_language(value).is_none_or(|l| l == *language),
            Instruction::NumberSentences { num_sentences, relation } => {
                relation.holds(count_sentences(value), *num_sentences)
            }
            Instruction::NumberParagraphs { num_paragraphs } => check_paragraphs(value, *num_paragraphs),
            Instruction::NumberWords { num_words, relation } => relation.holds(count_words(value), *num_words),
            Instruction::NthParagraphFirstWord { num_paragraphs, nth_paragraph, first_word } => {
                check_nth_paragraph(value, *num_paragraphs, *nth_paragraph, first_word)
            }
            Instruction::NumberPlaceholders { num_placeholders } => {
                re().placeholder.find_iter(value).count() >= *num_placeholders
            }
            Instruction::Postscript { marker } => marker.regex.is_match(&value.to_lowercase()),
            Instruction::NumberBulletLists { num_bullets } => {
                re().bullet_star.find_iter(value).count() + re().bullet_dash.find_iter(value).count() == *num_bullets
            }
            Instruction::ConstrainedResponse => {
                let v = py_strip(value);
                CONSTRAINED_RESPONSES.iter().any(|r| v.contains(r))
            }
            Instruction::NumberHighlightedSections { num_highlights } => count_highlights(value) >= *num_highlights,
            Instruction::MultipleSections { section_spliter, num_sections } => {
                section_spliter.regex.find_iter(value).count() >= *num_sections
            }
            Instruction::JsonFormat => check_json(value),
            Instruction::Title => re()
                .title
                .find_iter(value)
                .any(|m| !py_strip(m.as_str().trim_start_matches('<').trim_end_matches('>')).is_empty()),
            Instruction::TwoResponses => check_two_responses(value),
            Instruction::RepeatPrompt { prompt_to_repeat } => {
                py_strip(value).to_lowercase().starts_with(&py_strip(prompt_to_repeat).to_lowercase())
            }
            Instruction::EndChecker { end_phrase } => {
                py_strip(value).trim_matches('"').to_lowercase().ends_with(&py_strip(end_phrase).to_lowercase())
            }
            Instruction::CapitalWordFrequency { capital_frequency, capital_relation } => {
                capital_relation.holds(count_capital_words(value), *capital_frequency)
            }
            Instruction::EnglishCapital => py_isupper(value) && detect_language(value).is_none_or(|l| l == "en"),
            Instruction::EnglishLowercase => py_islower(value) && detect_language(value).is_none_or(|l| l == "en"),
            Instruction::NoComma => !value.contains(','),
            Instruction::Quotation => {
                let v = py_strip(value);
                v.chars().count() > 1 && v.starts_with('"') && v.ends_with('"')
            }
        }
    }

    /// Strict: the response is not blank and [`Instruction::check`] passes.
    pub fn check_strict(&self, response: &str) -> bool {
        !py_strip(response).is_empty() && self.check(response)
    }

    /// Loose: some non-blank variant of [`loose_variants`] passes.
    pub fn check_loose(&self, response: &str) -> bool {
        loose_variants(response).iter().any(|r| self.check_strict(r))
    }
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
    pub strict: Vec<bool>,
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
    pub prompts: usize,
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

// ---------------------------------------------------------------------------------------------
// Python string semantics
// ---------------------------------------------------------------------------------------------

/// Python's `str.isspace()` for one character: Unicode White_Space plus U+001C..U+001F.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_isspace)
}

/// Titlecase letters (general category Lt), which Python's `isupper`/`islower` treat as neither.
fn is_titlecase(c: char) -> bool {
    matches!(c, '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' | '\u{1f88}'..='\u{1f8f}' | '\u{1f98}'..='\u{1f9f}' | '\u{1fa8}'..='\u{1faf}' | '\u{1fbc}' | '\u{1fcc}' | '\u{1ffc}')
}

/// Python's `str.isupper()`: no lowercase or titlecase character, at least one uppercase one.
pub fn py_isupper(s: &str) -> bool {
    only_cased_as(s, char::is_uppercase, char::is_lowercase)
}

/// Python's `str.islower()`: no uppercase or titlecase character, at least one lowercase one.
pub fn py_islower(s: &str) -> bool {
    only_cased_as(s, char::is_lowercase, char::is_uppercase)
}

/// At least one character of case `wanted`, and none of case `other` or titlecase.
fn only_cased_as(s: &str, wanted: fn(char) -> bool, other: fn(char) -> bool) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if other(c) || is_titlecase(c) {
            return false;
        }
        cased |= wanted(c);
    }
    cased
}

fn py_char_isupper(c: char) -> bool {
    c.is_uppercase() && !c.is_lowercase() && !is_titlecase(c)
}

fn py_char_islower(c: char) -> bool {
    c.is_lowercase() && !c.is_uppercase() && !is_titlecase(c)
}

/// A word character of Python's stdlib `re` (`str.isalnum()` or `_`): letters and numbers.
fn is_py_re_word(c: char) -> bool {
    c == '_' || re().py_word.is_match(c.encode_utf8(&mut [0; 4]))
}

/// A word character of Rust's `regex` (and of Python's `regex` module, which NLTK uses).
fn is_rx_word(c: char) -> bool {
    re().rx_word.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Python's `re` `\s`, for use inside this module's regexes.
const PY_S: &str = r"[\s\x1C-\x1F]";

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

/// No character with a meaning in regex syntax (outside classes and verbose mode).
fn is_plain(s: &str) -> bool {
    !s.chars().any(|c| r"\.+*?()|[]{}^$".contains(c))
}

/// A regex matching `s` literally, case-insensitive as Python's `re.IGNORECASE` is (which also
/// matches `i` with `İ` and `ı`, unlike Unicode simple case folding).
fn literal_ignorecase(s: &str) -> String {
    let mut out = String::from("(?i)");
    for c in s.chars() {
        match c {
            'i' | 'I' | 'İ' | 'ı' => out.push_str("[iIİı]"),
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

fn compile(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(pattern).with_context(|| format!("{what} {pattern:?} is not a valid regular expression"))
}

impl Pattern {
    /// `re.search(keyword, response, re.IGNORECASE)` / `re.findall(...)`.
    fn keyword(text: &str) -> Result<Pattern> {
        ensure!(!text.is_empty(), "empty keyword");
        let literal = is_plain(text);
        let source = if literal { literal_ignorecase(text) } else { format!("(?i){text}") };
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "keyword")?, literal })
    }

    /// `re.search(r"\b" + word + r"\b", response, re.IGNORECASE)`.
    fn bounded_word(text: &str) -> Result<Pattern> {
        ensure!(!text.is_empty(), "empty forbidden word");
        let literal = is_plain(text);
        let source = if literal { literal_ignorecase(text) } else { format!(r"(?i)\b{text}\b") };
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "forbidden word")?, literal })
    }

    /// `r"\s?" + splitter + r"\s?\d+\s?"` (case-sensitive).
    fn section(text: &str) -> Result<Pattern> {
        let literal = is_plain(text);
        let body = if literal { regex::escape(text) } else { text.to_string() };
        let source = format!(r"{PY_S}?{body}{PY_S}?\d+{PY_S}?");
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "section splitter")?, literal })
    }

    /// The postscript regex, searched in the lower-cased response (`re.MULTILINE`).
    fn postscript(text: &str) -> Result<Pattern> {
        let body = match text {
            "P.P.S" => format!(r"p\.{PY_S}?p\.{PY_S}?s"),
            "P.S." => format!(r"p\.{PY_S}?s\."),
            _ if is_plain(text) => regex::escape(&text.to_lowercase()),
            _ => text.to_lowercase(),
        };
        let source = format!(r"(?m){PY_S}*{body}.*$");
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "postscript marker")?, literal: is_plain(text) })
    }

    /// Whether the word occurs with a Python-`re` word boundary on both sides.
    fn found_between_boundaries(&self, text: &str) -> bool {
        if !self.literal {
            return self.regex.is_match(text);
        }
        let boundary = |at: usize| {
            let before = text[..at].chars().next_back().is_some_and(is_py_re_word);
            let after = text[at..].chars().next().is_some_and(is_py_re_word);
            before != after
        };
        let mut from = 0;
        while from <= text.len() {
            let Some(m) = self.regex.find_at(text, from) else { return false };
            if boundary(m.start()) && boundary(m.end()) {
                return true;
            }
            // Try the next start position: candidates may overlap.
            from = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed regexes
// ---------------------------------------------------------------------------------------------

struct Regexes {
    py_word: Regex,
    rx_word: Regex,
    word_run: Regex,
    placeholder: Regex,
    bullet_star: Regex,
    bullet_dash: Regex,
    highlight: Regex,
    double_highlight: Regex,
    title: Regex,
    paragraph_divider: Regex,
    numeric: Regex,
    initial: Regex,
    // NLTK's word tokenizer, in order of application.
    tb_starting_quote_chars: Regex,
    tb_open_double_quote: Regex,
    tb_final_period_quotes: Regex,
    tb_comma_colon: Regex,
    tb_ellipsis: Regex,
    tb_symbols: Regex,
    tb_dashes: Regex,
    tb_final_period: Regex,
    tb_question: Regex,
    tb_closing_single_quote: Regex,
    tb_star: Regex,
    tb_brackets: Regex,
    tb_closing_quote_chars: Regex,
    tb_whitespace: Regex,
    tb_clitics1: Regex,
    tb_clitics2: Regex,
    /// Case-insensitive `first + second` of each of [`CONTRACTIONS`]: a cheap test that
    /// [`sub_contraction`] has something to do.
    tb_contractions: Vec<Regex>,
}

fn re() -> &'static Regexes {
    static RE: OnceLock<Regexes> = OnceLock::new();
    RE.get_or_init(|| {
        let r = |p: &str| Regex::new(p).expect("a fixed regex compiles");
        Regexes {
            py_word: r(r"^[\p{L}\p{N}_]$"),
            rx_word: r(r"^\w$"),
            word_run: r(r"\w+"),
            placeholder: r(r"\[.*?\]"),
            bullet_star: r(&format!(r"(?m)^{PY_S}*\*[^*].*$")),
            bullet_dash: r(&format!(r"(?m)^{PY_S}*-.*$")),
            highlight: r(r"\*[^\n*]*\*"),
            double_highlight: r(r"\*\*[^\n*]*\*\*"),
            title: r(r"<<[^\n]+>>"),
            paragraph_divider: r(&format!(r"{PY_S}?\*\*\*{PY_S}?")),
            numeric: r(r"^-?[.,]?\d[\d,.\-]*\.?$"),
            initial: r(r"^[^\W\d]\.$"),
            tb_starting_quote_chars: r("([«“‘„]|`+)"),
            tb_open_double_quote: r(r#"([ (\[{<])("|'')"#),
            tb_final_period_quotes: r(r#"([^.])(\.)([\])}>"'»”’ ]*)\s*$"#),
            tb_comma_colon: r(r"([:,])([^\d])"),
            tb_ellipsis: r(r"\.{2,}"),
            tb_symbols: r(r"[;@#$%&]"),
            tb_dashes: r("[\u{2012}-\u{2015}]"),
            tb_final_period: r(r#"([^.])(\.)([\])}>"']*)\s*$"#),
            tb_question: r(r"[?!]"),
            tb_closing_single_quote: r(r"([^'])' "),
            tb_star: r(r"[*]"),
            tb_brackets: r(r"[\]\[(){}<>]"),
            tb_closing_quote_chars: r("([»”’])"),
            tb_whitespace: r(r"\s+"),
            tb_clitics1: r(r"([^' ])('[sS]|'[mM]|'[dD]|') "),
            tb_clitics2: r(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "),
            tb_contractions: CONTRACTIONS
                .iter()
                .map(|(a, b, _, _)| r(&literal_ignorecase(&format!("{a}{b}"))))
                .collect(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Checkers that need more than one line
// ---------------------------------------------------------------------------------------------

/// `length_constraints:number_paragraphs`: split on `\s?\*\*\*\s?`; blank pieces are allowed
/// only first or last (not counted), a blank piece inside fails.
fn check_paragraphs(value: &str, expected: usize) -> bool {
    let pieces: Vec<&str> = re().paragraph_divider.split(value).collect();
    let mut count = pieces.len();
    for (i, p) in pieces.iter().enumerate() {
        if py_strip(p).is_empty() {
            if i == 0 || i == pieces.len() - 1 {
                count -= 1;
            } else {
                return false;
            }
        }
    }
    count == expected
}

/// `length_constraints:nth_paragraph_first_word`, quirks included: the paragraph is looked up
/// among all `\n\n` pieces (blank ones too) while the bound uses the non-blank count.
fn check_nth_paragraph(value: &str, expected: usize, nth: usize, first_word: &str) -> bool {
    let paragraphs: Vec<&str> = value.split("\n\n").collect();
    let count = paragraphs.iter().filter(|p| !py_strip(p).is_empty()).count();
    if nth > count || nth == 0 {
        return false;
    }
    let paragraph = py_strip(paragraphs[nth - 1]);
    let Some(word) = paragraph.split(py_isspace).find(|w| !w.is_empty()) else { return false };
    let word = word.trim_start_matches('\'').trim_start_matches('"');
    let mut first = String::new();
    for c in word.chars() {
        if matches!(c, '.' | ',' | '?' | '!' | '\'' | '"') {
            break;
        }
        first.extend(c.to_lowercase());
    }
    count == expected && first == first_word
}

/// `detectable_format:number_highlighted_sections`: non-blank `*...*` plus non-blank `**...**`.
fn count_highlights(value: &str) -> usize {
    let single = re().highlight.find_iter(value).filter(|m| !py_strip(m.as_str().trim_matches('*')).is_empty()).count();
    let double = re()
        .double_highlight
        .find_iter(value)
        .filter(|m| {
            let s = m.as_str();
            let s = s.strip_prefix("**").unwrap_or(s);
            let s = s.strip_suffix("**").unwrap_or(s);
            !py_strip(s).is_empty()
        })
        .count();
    single + double
}

/// `combination:two_responses`: split on `******`; blank pieces only first or last; exactly two
/// non-blank pieces, different after `strip()`.
fn check_two_responses(value: &str) -> bool {
    let pieces: Vec<&str> = value.split("******").collect();
    let mut valid = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if py_strip(p).is_empty() {
            if i != 0 && i != pieces.len() - 1 {
                return false;
            }
        } else {
            valid.push(*p);
        }
    }
    valid.len() == 2 && py_strip(valid[0]) != py_strip(valid[1])
}

/// `detectable_format:json_format`: strip, remove one opening fence (the official chain of
/// `removeprefix` calls, in its order) and a closing one, strip, then `json.loads`.
fn check_json(value: &str) -> bool {
    let mut v = py_strip(value);
    for prefix in ["```json", "```Json", "```JSON", "```"] {
        v = v.strip_prefix(prefix).unwrap_or(v);
    }
    v = v.strip_suffix("```").unwrap_or(v);
    python_json_valid(py_strip(v))
}

/// Whether Python's `json.loads` accepts `s` (the C scanner's grammar: JSON plus `NaN`,
/// `Infinity`, `-Infinity`; control characters refused inside strings; integer literals of more
/// than 4300 digits refused, as CPython >= 3.11 does by default).
pub fn python_json_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    let string = |mut i: usize| -> Option<usize> {
        // b[i] == b'"'
        i += 1;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    };
    let number = |mut i: usize| -> Option<usize> {
        let start = i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let int_digits = i - int_start;
        let mut is_float = false;
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            i += 2;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let digits_start = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j > digits_start {
                is_float = true;
                i = j;
            }
        }
        if !is_float && int_digits > 4300 {
            return None;
        }
        debug_assert!(i > start);
        Some(i)
    };
    // An object member's `"key" :` at i; returns where its value starts.
    let member_key = |i: usize| -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let i = ws(string(i)?);
        (b.get(i) == Some(&b':')).then(|| ws(i + 1))
    };
    // A value starting at i; containers push onto the stack and come back through the loop.
    let mut stack: Vec<u8> = Vec::new();
    let mut i = ws(0);
    'value: loop {
        // Parse one value at i.
        match b.get(i) {
            Some(b'{') => {
                i = ws(i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    let Some(j) = member_key(i) else { return false };
                    i = j;
                    stack.push(b'{');
                    continue 'value;
                }
            }
            Some(b'[') => {
                i = ws(i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(b'[');
                    continue 'value;
                }
            }
            Some(b'"') => match string(i) {
                Some(j) => i = j,
                None => return false,
            },
            Some(_) => {
                let rest = &b[i..];
                let literal = ["null", "true", "false", "NaN", "Infinity", "-Infinity"]
                    .iter()
                    .find(|l| rest.starts_with(l.as_bytes()));
                if let Some(l) = literal {
                    i += l.len();
                } else {
                    match number(i) {
                        Some(j) => i = j,
                        None => return false,
                    }
                }
            }
            None => return false,
        }
        // After a value: close containers or move to the next element.
        loop {
            let Some(&top) = stack.last() else {
                return ws(i) == b.len();
            };
            i = ws(i);
            match (top, b.get(i)) {
                (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                    stack.pop();
                    i += 1;
                }
                (b'{', Some(b',')) => {
                    let Some(j) = member_key(ws(i + 1)) else { return false };
                    i = j;
                    continue 'value;
                }
                (b'[', Some(b',')) => {
                    i = ws(i + 1);
                    continue 'value;
                }
                _ => return false,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Language
// ---------------------------------------------------------------------------------------------

/// `langdetect.detect(text)` with seed 0 (see the module notes); `None` where langdetect raises
/// (no letters to go by), which the official checkers count as a pass.
pub fn detect_language(text: &str) -> Option<String> {
    static FACTORY: OnceLock<langdetect::DetectorFactory> = OnceLock::new();
    let factory = FACTORY.get_or_init(|| {
        let mut f = langdetect::DetectorFactory::new(langdetect::Compat::python(11));
        f.load_builtin(&langdetect::DetectorFactory::builtin_files())
            .map_err(|(_, e)| e)
            .expect("langdetect's built-in profiles load");
        f.seed = langdetect::Seed::Int(0);
        f
    });
    factory.detect(text).ok()
}

// ---------------------------------------------------------------------------------------------
// Words
// ---------------------------------------------------------------------------------------------

/// `instructions_util.count_words`: the number of `\w+` runs (NLTK's `RegexpTokenizer`).
pub fn count_words(text: &str) -> usize {
    re().word_run.find_iter(text).count()
}

/// The number of tokens of [`word_tokenize`] that are all capitals (`str.isupper()`).
pub fn count_capital_words(text: &str) -> usize {
    word_tokenize(text).iter().filter(|w| py_isupper(w)).count()
}

/// `nltk.word_tokenize(text)`: Punkt sentences, each split by NLTK's improved Treebank word
/// tokenizer (`NLTKWordTokenizer`, NLTK 3.10).
pub fn word_tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for (s, e) in punkt_spans(&chars) {
        let sentence: String = chars[s..e].iter().collect();
        out.extend(treebank_tokenize(&sentence));
    }
    out
}

/// MacIntyre's contractions as NLTK splits them: (first part, second part, preceded by a space
/// instead of `\b`, followed by whitespace instead of `\b`).
const CONTRACTIONS: [(&str, &str, bool, bool); 10] = [
    ("can", "not", false, false),
    ("d", "'ye", false, false),
    ("gim", "me", false, false),
    ("gon", "na", false, false),
    ("got", "ta", false, false),
    ("lem", "me", false, false),
    ("more", "'n", false, false),
    ("wan", "na", false, true),
    ("'t", "is", true, false),
    ("'t", "was", true, false),
];

/// Replace `(?i)\b(first)(second)` + (`\b` or a following whitespace) by ` first second `,
/// with Python-`re` semantics (word boundaries of `str.isalnum`, `i` ~ `İ`/`ı`), scanning left to
/// right as `re.sub` does. `lead_space` requires (and keeps) one space before `first` instead of
/// the opening `\b`.
fn sub_contraction(text: &str, first: &str, second: &str, lead_space: bool, then_space: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = first.chars().chain(second.chars()).collect();
    let split = first.chars().count();
    let ci = |c: char, p: char| -> bool {
        match p {
            'i' => matches!(c, 'i' | 'I' | 'İ' | 'ı'),
            's' => matches!(c, 's' | 'S' | 'ſ'),
            'k' => matches!(c, 'k' | 'K' | '\u{212a}'),
            _ => c.to_lowercase().eq(p.to_lowercase()),
        }
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let start = if lead_space { i + 1 } else { i };
        let end = start + pattern.len();
        let matched = end <= chars.len()
            && (!lead_space || chars[i] == ' ')
            && (lead_space || i == 0 || !is_py_re_word(chars[i - 1]) || !is_py_re_word(chars[i]))
            && chars[start..end].iter().zip(&pattern).all(|(&c, &p)| ci(c, p))
            && if then_space {
                end < chars.len() && py_isspace(chars[end])
            } else {
                end == chars.len() || !is_py_re_word(chars[end])
            };
        if matched {
            out.push(' ');
            out.extend(&chars[start..start + split]);
            out.push(' ');
            out.extend(&chars[start + split..end]);
            out.push(' ');
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `t = regex.sub(replacement, t)`, copying only when something matched.
fn sub(t: &mut String, regex: &Regex, replacement: &str) {
    if let std::borrow::Cow::Owned(s) = regex.replace_all(t, replacement) {
        *t = s;
    }
}

/// NLTK's `NLTKWordTokenizer.tokenize` (the tokenizer behind `nltk.word_tokenize`) on one
/// sentence, step for step.
fn treebank_tokenize(sentence: &str) -> Vec<String> {
    let r = re();
    let mut t = sentence.to_string();
    // Starting quotes.
    sub(&mut t, &r.tb_starting_quote_chars, " ${1} ");
    if let Some(rest) = t.strip_prefix('"') {
        t = format!("``{rest}");
    }
    t = t.replace("``", " `` ");
    sub(&mut t, &r.tb_open_double_quote, "${1} `` ");
    t = split_opening_single_quotes(&t);
    // Punctuation.
    sub(&mut t, &r.tb_final_period_quotes, "${1} ${2} ${3} ");
    sub(&mut t, &r.tb_comma_colon, " ${1} ${2}");
    t = pad_final_comma_colon(&t);
    sub(&mut t, &r.tb_ellipsis, " ${0} ");
    sub(&mut t, &r.tb_symbols, " ${0} ");
    sub(&mut t, &r.tb_dashes, " ${0} ");
    sub(&mut t, &r.tb_final_period, "${1} ${2}${3} ");
    sub(&mut t, &r.tb_question, " ${0} ");
    sub(&mut t, &r.tb_closing_single_quote, "${1} ' ");
    sub(&mut t, &r.tb_star, " ${0} ");
    // Parentheses and brackets, double dashes.
    sub(&mut t, &r.tb_brackets, " ${0} ");
    t = t.replace("--", " -- ");
    // Ending quotes.
    t = format!(" {t} ");
    sub(&mut t, &r.tb_closing_quote_chars, " ${1} ");
    t = t.replace("''", " '' ");
    t = t.replace('"', " '' ");
    sub(&mut t, &r.tb_whitespace, " ");
    sub(&mut t, &r.tb_clitics1, "${1} ${2} ");
    sub(&mut t, &r.tb_clitics2, "${1} ${2} ");
    // MacIntyre's contractions (stdlib `re`, so Python-`re` word boundaries).
    for (k, &(a, b, lead_space, then_space)) in CONTRACTIONS.iter().enumerate() {
        if r.tb_contractions[k].is_match(&t) {
            t = sub_contraction(&t, a, b, lead_space, then_space);
        }
    }
    t.split(py_isspace).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// `(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)` -> `' ` (the `regex` module's `\w`).
fn split_opening_single_quotes(t: &str) -> String {
    if !t.contains('\'') {
        return t.to_string();
    }
    let chars: Vec<char> = t.chars().collect();
    let clitic_follows = |i: usize| {
        ["re", "ve", "ll", "m", "t", "s", "d", "n"].iter().any(|clitic| {
            let n = clitic.len();
            i + n <= chars.len()
                && chars[i..i + n]
                    .iter()
                    .zip(clitic.chars())
                    .all(|(&c, p)| c.to_ascii_lowercase() == p || (p == 's' && c == 'ſ'))
                && chars.get(i + n).is_none_or(|&c| !is_rx_word(c))
        })
    };
    let mut out = String::with_capacity(t.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        if c == '\''
            && (i == 0 || !is_rx_word(chars[i - 1]))
            && chars.get(i + 1).is_some_and(|&n| is_rx_word(n))
            && !clitic_follows(i + 1)
        {
            out.push(' ');
        }
    }
    out
}

/// `([:,])$` -> ` \1 ` (Python's `$`: the end, or just before a final newline).
fn pad_final_comma_colon(t: &str) -> String {
    let (body, newline) = match t.strip_suffix('\n') {
        Some(b) if b.ends_with([':', ',']) => (b, "\n"),
        _ => (t, ""),
    };
    match body.chars().next_back() {
        Some(c @ (':' | ',')) => format!("{} {c} {newline}", &body[..body.len() - 1]),
        _ => t.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Punkt sentence tokenizer (NLTK 3.10 `PunktSentenceTokenizer`, English model)
// ---------------------------------------------------------------------------------------------

/// `instructions_util.count_sentences`: the number of sentences NLTK's Punkt tokenizer (English
/// model) finds.
pub fn count_sentences(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    punkt_spans(&chars).len()
}

/// The sentences of `text` as NLTK's `PunktTokenizer("english").tokenize` returns them.
pub fn sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    punkt_spans(&chars).into_iter().map(|(s, e)| chars[s..e].iter().collect()).collect()
}

const ORTHO_BEG_UC: u32 = 1 << 1;
const ORTHO_MID_UC: u32 = 1 << 2;
const ORTHO_UNK_UC: u32 = 1 << 3;
const ORTHO_BEG_LC: u32 = 1 << 4;
const ORTHO_MID_LC: u32 = 1 << 5;
const ORTHO_UNK_LC: u32 = 1 << 6;
const ORTHO_UC: u32 = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC;
const ORTHO_LC: u32 = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC;

struct PunktModel {
    abbrev_types: HashSet<String>,
    collocations: HashSet<(String, String)>,
    sent_starters: HashSet<String>,
    ortho_context: HashMap<String, u32>,
}

fn punkt_model() -> &'static PunktModel {
    static MODEL: OnceLock<PunktModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        parse_punkt_model(include_str!("ifeval_punkt_english.txt")).expect("the bundled Punkt model parses")
    })
}

fn parse_punkt_model(text: &str) -> Result<PunktModel> {
    let mut m = PunktModel {
        abbrev_types: HashSet::new(),
        collocations: HashSet::new(),
        sent_starters: HashSet::new(),
        ortho_context: HashMap::new(),
    };
    let mut section = "";
    let json = |s: &str| serde_json::from_str::<String>(s).with_context(|| format!("bad entry {s:?}"));
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('@') {
            section = name;
            continue;
        }
        match section {
            "" => {}
            "abbrev_types" => {
                m.abbrev_types.insert(json(line)?);
            }
            "sent_starters" => {
                m.sent_starters.insert(json(line)?);
            }
            "collocations" => {
                let (a, b) = line.split_once('\t').with_context(|| format!("bad collocation {line:?}"))?;
                m.collocations.insert((json(a)?, json(b)?));
            }
            "ortho_context" => {
                let (w, f) = line.split_once('\t').with_context(|| format!("bad ortho_context line {line:?}"))?;
                m.ortho_context.insert(w.to_string(), f.parse()?);
            }
            other => bail!("unknown section @{other}"),
        }
    }
    ensure!(!m.ortho_context.is_empty() && !m.abbrev_types.is_empty(), "incomplete Punkt model");
    Ok(m)
}

fn is_rx_space(c: char) -> bool {
    c.is_whitespace()
}

/// `PunktLanguageVars._re_non_word_chars`: characters that cannot appear within words.
fn is_non_word(c: char) -> bool {
    matches!(
        c,
        ')' | '"'
            | ';'
            | '}'
            | ']'
            | '*'
            | ':'
            | '@'
            | '\''
            | '('
            | '{'
            | '['
            | '‘'
            | '’'
            | '“'
            | '”'
            | '«'
            | '»'
            | '?'
            | '!'
    )
}

/// `PunktLanguageVars._re_word_start` (as a lookahead on a non-space character).
fn is_word_start(c: char) -> bool {
    !matches!(c, '(' | '"' | '`' | '{' | '[' | ':' | ';' | '&' | '#' | '*' | '@' | ')' | '}' | ']' | '-' | ',')
}

/// The length of `PunktLanguageVars._re_multi_char_punct` (`\-{2,}|\.{2,}|(?:\.\s){2,}\.`)
/// matched at `i`, if it matches.
fn multi_char_at(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied();
    let run = |ch: char| c[i..].iter().take_while(|&&x| x == ch).count();
    if at(i) == Some('-') && at(i + 1) == Some('-') {
        return Some(run('-'));
    }
    if at(i) == Some('.') && at(i + 1) == Some('.') {
        return Some(run('.'));
    }
    let mut pairs = 0;
    while at(i + 2 * pairs) == Some('.') && at(i + 2 * pairs + 1).is_some_and(is_rx_space) {
        pairs += 1;
    }
    if pairs >= 2 && at(i + 2 * pairs) == Some('.') {
        Some(2 * pairs + 1)
    } else if pairs >= 3 {
        Some(2 * pairs - 1)
    } else {
        None
    }
}

/// Whether `_re_multi_char_punct` matches at `i` (in constant time: `--`, `..` or `. . .`).
fn multi_char_starts(c: &[char], i: usize) -> bool {
    let at = |k: usize| c.get(k).copied();
    (at(i) == Some('-') && at(i + 1) == Some('-'))
        || (at(i) == Some('.') && at(i + 1) == Some('.'))
        || (at(i) == Some('.')
            && at(i + 1).is_some_and(is_rx_space)
            && at(i + 2) == Some('.')
            && at(i + 3).is_some_and(is_rx_space)
            && at(i + 4) == Some('.'))
}

/// `PunktLanguageVars.word_tokenize` on one line (no `\n` inside).
fn punkt_word_tokenize(line: &[char]) -> Vec<String> {
    let n = line.len();
    let ends_word = |j: usize| -> bool {
        if j >= n {
            return true;
        }
        let c = line[j];
        if is_rx_space(c) || is_non_word(c) || multi_char_starts(line, j) {
            return true;
        }
        c == ','
            && (j + 1 >= n || is_rx_space(line[j + 1]) || is_non_word(line[j + 1]) || multi_char_starts(line, j + 1))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if let Some(len) = multi_char_at(line, i) {
            out.push(line[i..i + len].iter().collect());
            i += len;
        } else if is_rx_space(line[i]) {
            i += 1;
        } else if is_word_start(line[i]) {
            let mut j = i + 1;
            while !ends_word(j) {
                j += 1;
            }
            out.push(line[i..j].iter().collect());
            i = j;
        } else {
            out.push(line[i].to_string());
            i += 1;
        }
    }
    out
}

#[derive(PartialEq)]
enum Ortho {
    Starter,
    NotStarter,
    Unknown,
}

struct PunktToken {
    tok: String,
    ty: String,
    period_final: bool,
    sentbreak: bool,
    abbr: bool,
    ellipsis: bool,
}

impl PunktToken {
    fn new(tok: String) -> Self {
        let lower = tok.to_lowercase();
        let ty = if re().numeric.is_match(&lower) { "##number##".to_string() } else { lower };
        let period_final = tok.ends_with('.');
        PunktToken { tok, ty, period_final, sentbreak: false, abbr: false, ellipsis: false }
    }

    fn type_no_period(&self) -> &str {
        if self.ty.chars().count() > 1 && self.ty.ends_with('.') {
            &self.ty[..self.ty.len() - 1]
        } else {
            &self.ty
        }
    }

    fn type_no_sentperiod(&self) -> &str {
        if self.sentbreak {
            self.type_no_period()
        } else {
            &self.ty
        }
    }

    fn first_upper(&self) -> bool {
        self.tok.chars().next().is_some_and(py_char_isupper)
    }

    fn first_lower(&self) -> bool {
        self.tok.chars().next().is_some_and(py_char_islower)
    }

    fn is_ellipsis(&self) -> bool {
        self.tok.len() >= 2 && self.tok.chars().all(|c| c == '.')
    }

    fn is_initial(&self) -> bool {
        re().initial.is_match(&self.tok)
    }
}

/// `PunktBaseClass._tokenize_words`: Punkt word tokens of each non-blank line.
fn punkt_tokens(text: &[char]) -> Vec<PunktToken> {
    let mut out = Vec::new();
    for line in text.split(|&c| c == '\n') {
        if line.iter().all(|&c| py_isspace(c)) {
            continue;
        }
        out.extend(punkt_word_tokenize(line).into_iter().map(PunktToken::new));
    }
    out
}

fn ortho_heuristic(m: &PunktModel, t: &PunktToken) -> Ortho {
    if matches!(t.tok.as_str(), ";" | ":" | "," | "." | "!" | "?") {
        return Ortho::NotStarter;
    }
    let ctx = m.ortho_context.get(t.type_no_sentperiod()).copied().unwrap_or(0);
    if t.first_upper() && ctx & ORTHO_LC != 0 && ctx & ORTHO_MID_UC == 0 {
        return Ortho::Starter;
    }
    if t.first_lower() && (ctx & ORTHO_UC != 0 || ctx & ORTHO_BEG_LC == 0) {
        return Ortho::NotStarter;
    }
    Ortho::Unknown
}

/// Both annotation passes of `PunktSentenceTokenizer._annotate_tokens`.
fn annotate(m: &PunktModel, toks: &mut [PunktToken]) {
    for t in toks.iter_mut() {
        if matches!(t.tok.as_str(), "." | "?" | "!") {
            t.sentbreak = true;
        } else if t.is_ellipsis() {
            t.ellipsis = true;
        } else if t.period_final && !t.tok.ends_with("..") {
            let base = t.tok[..t.tok.len() - 1].to_lowercase();
            let last = base.rsplit('-').next().unwrap_or("");
            if m.abbrev_types.contains(&base) || m.abbrev_types.contains(last) {
                t.abbr = true;
            } else {
                t.sentbreak = true;
            }
        }
    }
    for i in 0..toks.len().saturating_sub(1) {
        let (head, tail) = toks.split_at_mut(i + 1);
        let (t1, t2) = (&mut head[i], &tail[0]);
        if !t1.period_final {
            continue;
        }
        let typ = t1.type_no_period().to_string();
        let next_typ = t2.type_no_sentperiod();
        let is_initial = t1.is_initial();
        if m.collocations.contains(&(typ.clone(), next_typ.to_string())) {
            t1.sentbreak = false;
            t1.abbr = true;
            continue;
        }
        if (t1.abbr || t1.ellipsis) && !is_initial {
            if ortho_heuristic(m, t2) == Ortho::Starter {
                t1.sentbreak = true;
                continue;
            }
            if t2.first_upper() && m.sent_starters.contains(next_typ) {
                t1.sentbreak = true;
                continue;
            }
        }
        if is_initial || typ == "##number##" {
            let o = ortho_heuristic(m, t2);
            if o == Ortho::NotStarter {
                t1.sentbreak = false;
                t1.abbr = true;
                continue;
            }
            if o == Ortho::Unknown
                && is_initial
                && t2.first_upper()
                && m.ortho_context.get(next_typ).copied().unwrap_or(0) & ORTHO_LC == 0
            {
                t1.sentbreak = false;
                t1.abbr = true;
            }
        }
    }
}

/// `PunktSentenceTokenizer.text_contains_sentbreak`: a sentence break before the last token.
fn text_contains_sentbreak(m: &PunktModel, text: &[char]) -> bool {
    let mut toks = punkt_tokens(text);
    annotate(m, &mut toks);
    toks.len() > 1 && toks[..toks.len() - 1].iter().any(|t| t.sentbreak)
}

/// A match of `PunktLanguageVars.period_context_re`: the sentence-ending character at `start`
/// and the lookahead `after_tok` (`[start + 1, after_end)`), with `next_tok` starting at
/// `next_tok` when the lookahead was whitespace and a token.
struct PeriodContext {
    start: usize,
    after_end: usize,
    next_tok: Option<usize>,
}

fn period_contexts(c: &[char]) -> Vec<PeriodContext> {
    let n = c.len();
    let mut out = Vec::new();
    for i in 0..n {
        if !matches!(c[i], '.' | '?' | '!') || i + 1 >= n {
            continue;
        }
        if is_non_word(c[i + 1]) {
            out.push(PeriodContext { start: i, after_end: i + 2, next_tok: None });
        } else if is_rx_space(c[i + 1]) {
            let mut j = i + 1;
            while j < n && is_rx_space(c[j]) {
                j += 1;
            }
            if j < n {
                let mut k = j;
                while k < n && !is_rx_space(c[k]) {
                    k += 1;
                }
                out.push(PeriodContext { start: i, after_end: k, next_tok: Some(j) });
            }
        }
    }
    out
}

/// Python's `text[s:e]` on characters.
fn py_slice(c: &[char], s: usize, e: usize) -> &[char] {
    let e = e.min(c.len());
    if s >= e {
        &[]
    } else {
        &c[s..e]
    }
}

/// `PunktSentenceTokenizer.span_tokenize(text)` (with boundary realignment), in characters.
fn punkt_spans(c: &[char]) -> Vec<(usize, usize)> {
    let m = punkt_model();
    // _match_potential_end_contexts + _slices_from_text.
    let mut slices: Vec<(usize, usize)> = Vec::new();
    let mut last_break = 0;
    let mut consider = |pm: &PeriodContext, word: (usize, usize), slices: &mut Vec<(usize, usize)>| {
        let mut context: Vec<char> = py_slice(c, word.0, word.1).to_vec();
        context.extend_from_slice(&c[pm.start..pm.after_end]);
        if text_contains_sentbreak(m, &context) {
            slices.push((last_break, pm.start + 1));
            last_break = pm.next_tok.unwrap_or(pm.start + 1);
        }
    };
    let mut previous: Option<(PeriodContext, (usize, usize))> = None;
    let mut previous_slice = (0usize, 0usize);
    for pm in period_contexts(c) {
        let before = py_slice(c, previous_slice.1, pm.start);
        let last_ws =
            before.iter().rposition(|&ch| matches!(ch, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')).unwrap_or(0);
        let word_start = if last_ws != 0 { previous_slice.1 + last_ws + 1 } else { previous_slice.0 };
        let word = (word_start, pm.start);
        if let Some((prev_pm, prev_word)) = previous.take() {
            if previous_slice.1 <= word.0 {
                consider(&prev_pm, prev_word, &mut slices);
            }
        }
        previous_slice = word;
        previous = Some((pm, word));
    }
    if let Some((prev_pm, prev_word)) = previous {
        consider(&prev_pm, prev_word, &mut slices);
    }
    let text_end = {
        let s: String = c.iter().collect();
        py_rstrip(&s).chars().count()
    };
    slices.push((last_break, text_end));
    // _realign_boundaries.
    let mut out = Vec::new();
    let mut realign = 0;
    for k in 0..slices.len() {
        let s1 = (slices[k].0 + realign, slices[k].1);
        let Some(&s2) = slices.get(k + 1) else {
            if !py_slice(c, s1.0, s1.1).is_empty() {
                out.push(s1);
            }
            continue;
        };
        match realignment(py_slice(c, s2.0, s2.1)) {
            Some((kept, end)) => {
                out.push((s1.0, s2.0 + kept));
                realign = end;
            }
            None => {
                realign = 0;
                if !py_slice(c, s1.0, s1.1).is_empty() {
                    out.push(s1);
                }
            }
        }
    }
    out
}

/// `re_boundary_realignment.match(text)`
/// (`["\')\]}‘’“”«»]+?(?:\s+|(?=--)|$)`, multiline): the number of closing characters kept with
/// the previous sentence and the end of the match.
fn realignment(t: &[char]) -> Option<(usize, usize)> {
    let closing = |ch: char| matches!(ch, '"' | '\'' | ')' | ']' | '}' | '‘' | '’' | '“' | '”' | '«' | '»');
    let mut k = 0;
    while k < t.len() && closing(t[k]) {
        k += 1;
        if k < t.len() && is_rx_space(t[k]) {
            let end = k + t[k..].iter().take_while(|&&ch| is_rx_space(ch)).count();
            return Some((k, end));
        }
        if t[k..].starts_with(&['-', '-']) || k == t.len() || t[k] == '\n' {
            return Some((k, k));
        }
    }
    None
}
