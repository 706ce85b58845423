//! The 25 verifiable instructions of IFEval: their ids, their arguments as the data gives them
//! (`kwargs`), typed and validated once when an item is read. What each one checks is in
//! `checkers`.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{Map, Value};

use super::loose_variants;
use super::patterns::Pattern;
use super::pystr::{py_isspace, py_strip};

/// `"less than"` (count < threshold) or `"at least"` (count >= threshold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The count must be below the threshold.
    LessThan,
    /// The count must reach the threshold.
    AtLeast,
}

impl Relation {
    /// Whether `count` stands in this relation to `threshold`.
    pub(super) fn holds(self, count: usize, threshold: usize) -> bool {
        match self {
            Relation::LessThan => count < threshold,
            Relation::AtLeast => count >= threshold,
        }
    }
}

/// One verifiable instruction with its arguments, one variant per instruction id of IFEval.
#[derive(Clone, Debug)]
pub enum Instruction {
    /// `keywords:existence`: every keyword occurs (case-insensitive).
    KeywordsExistence {
        /// The keywords, matched as [`Pattern`]s.
        keywords: Vec<Pattern>,
    },
    /// `keywords:frequency`: the number of (non-overlapping, case-insensitive) occurrences.
    KeywordsFrequency {
        /// The keyword.
        keyword: Pattern,
        /// The threshold.
        frequency: usize,
        /// How the count must compare with the threshold.
        relation: Relation,
    },
    /// `keywords:forbidden_words`: no word occurs between word boundaries (case-insensitive).
    ForbiddenWords {
        /// The words, sorted and deduplicated (the data's `forbidden_words`).
        words: Vec<Pattern>,
    },
    /// `keywords:letter_frequency`: occurrences of `letter` in the lower-cased response.
    LetterFrequency {
        /// The character counted, lower-cased if an ASCII letter.
        letter: char,
        /// The threshold (the data's `let_frequency`).
        frequency: usize,
        /// How the count must compare with the threshold (the data's `let_relation`).
        relation: Relation,
    },
    /// `language:response_language`: langdetect's answer equals `language` (ISO 639-1).
    ResponseLanguage {
        /// The expected language code.
        language: String,
    },
    /// `length_constraints:number_sentences`: Punkt sentences.
    NumberSentences {
        /// The threshold.
        num_sentences: usize,
        /// How the count must compare with the threshold.
        relation: Relation,
    },
    /// `length_constraints:number_paragraphs`: exactly this many `***`-separated paragraphs.
    NumberParagraphs {
        /// The required count.
        num_paragraphs: usize,
    },
    /// `length_constraints:number_words`: `\w+` runs.
    NumberWords {
        /// The threshold.
        num_words: usize,
        /// How the count must compare with the threshold.
        relation: Relation,
    },
    /// `length_constraints:nth_paragraph_first_word`: `\n\n`-separated paragraphs, and the first
    /// word of paragraph `nth_paragraph` (1-based).
    NthParagraphFirstWord {
        /// The required number of non-blank paragraphs.
        num_paragraphs: usize,
        /// The paragraph whose first word is checked, within `1..=num_paragraphs`.
        nth_paragraph: usize,
        /// The required first word, lower-cased.
        first_word: String,
    },
    /// `detectable_content:number_placeholders`: at least this many `[...]`.
    NumberPlaceholders {
        /// The minimum count.
        num_placeholders: usize,
    },
    /// `detectable_content:postscript`: a postscript opened by the marker (`P.S.`, `P.P.S`).
    Postscript {
        /// The marker (the data's `postscript_marker`).
        marker: Pattern,
    },
    /// `detectable_format:number_bullet_lists`: exactly this many `*` or `-` bullet lines.
    NumberBulletLists {
        /// The required count.
        num_bullets: usize,
    },
    /// `detectable_format:constrained_response`: contains "My answer is yes./no./maybe.".
    ConstrainedResponse,
    /// `detectable_format:number_highlighted_sections`: at least this many `*...*` / `**...**`.
    NumberHighlightedSections {
        /// The minimum count.
        num_highlights: usize,
    },
    /// `detectable_format:multiple_sections`: at least this many `<splitter> <number>` marks.
    MultipleSections {
        /// The word opening each section, e.g. `Section` (spelled as the data spells it).
        section_spliter: Pattern,
        /// The minimum count.
        num_sections: usize,
    },
    /// `detectable_format:json_format`: the whole response (fences removed) is JSON.
    JsonFormat,
    /// `detectable_format:title`: a non-blank `<<title>>`.
    Title,
    /// `combination:two_responses`: two different responses separated by `******`.
    TwoResponses,
    /// `combination:repeat_prompt`: starts with `prompt_to_repeat` (case-insensitive).
    RepeatPrompt {
        /// The text the response must start with.
        prompt_to_repeat: String,
    },
    /// `startend:end_checker`: ends with `end_phrase` (case-insensitive, closing `"` ignored).
    EndChecker {
        /// The phrase the response must end with, stripped.
        end_phrase: String,
    },
    /// `change_case:capital_word_frequency`: all-capital tokens of `nltk.word_tokenize`.
    CapitalWordFrequency {
        /// The threshold.
        capital_frequency: usize,
        /// How the count must compare with the threshold.
        capital_relation: Relation,
    },
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
            "keywords:forbidden_words" => forbidden_words(&a)?,
            "keywords:letter_frequency" => letter_frequency(&a)?,
            "language:response_language" => response_language(&a)?,
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
            "length_constraints:nth_paragraph_first_word" => nth_paragraph_first_word(&a)?,
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

    /// Strict: the response is not blank and [`Instruction::check`] passes.
    pub fn check_strict(&self, response: &str) -> bool {
        !py_strip(response).is_empty() && self.check(response)
    }

    /// Loose: some non-blank variant of [`loose_variants`] passes.
    pub fn check_loose(&self, response: &str) -> bool {
        loose_variants(response).iter().any(|r| self.check_strict(r))
    }
}

/// `keywords:forbidden_words`: the words sorted and deduplicated, as the official code keeps them.
fn forbidden_words(a: &Args) -> Result<Instruction> {
    let mut words = a.words("forbidden_words")?;
    words.sort();
    words.dedup();
    Ok(Instruction::ForbiddenWords { words: words.iter().map(|w| Pattern::bounded_word(w)).collect::<Result<_>>()? })
}

/// `keywords:letter_frequency`: one character, lower-cased when it is an ASCII letter.
fn letter_frequency(a: &Args) -> Result<Instruction> {
    let raw = a.text("letter")?;
    let mut chars = raw.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        bail!("argument `letter` must be one character, not {raw:?}");
    };
    // Python: `letter.strip().lower()`; a non-letter is counted as given (module notes).
    ensure!(!py_isspace(c), "argument `letter` is blank");
    let letter = if c.is_ascii_alphabetic() { c.to_ascii_lowercase() } else { c };
    Ok(Instruction::LetterFrequency {
        letter,
        frequency: a.count("let_frequency")?,
        relation: a.relation("let_relation")?,
    })
}

/// `language:response_language`: one of the codes the official code accepts.
fn response_language(a: &Args) -> Result<Instruction> {
    let language = a.text("language")?;
    ensure!(
        LANGUAGE_CODES.contains(&language),
        "argument `language`: {language:?} is not one of IFEval's language codes"
    );
    Ok(Instruction::ResponseLanguage { language: language.to_string() })
}

/// `length_constraints:nth_paragraph_first_word`: `nth_paragraph` within `1..=num_paragraphs`.
fn nth_paragraph_first_word(a: &Args) -> Result<Instruction> {
    let num_paragraphs = a.count("num_paragraphs")?;
    let nth_paragraph = a.count("nth_paragraph")?;
    ensure!(
        (1..=num_paragraphs).contains(&nth_paragraph),
        "argument `nth_paragraph` ({nth_paragraph}) must lie in 1..={num_paragraphs} (`num_paragraphs`)"
    );
    let first_word = a.text("first_word")?.to_lowercase();
    Ok(Instruction::NthParagraphFirstWord { num_paragraphs, nth_paragraph, first_word })
}
