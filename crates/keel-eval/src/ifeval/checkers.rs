//! What each instruction checks: [`Instruction::check`], the official `check_following` of each
//! of the 25 instruction classes, with the checkers that need more than one line beside it, the
//! word count and the language detection.

use std::sync::OnceLock;

use regex::Regex;

use super::instructions::Instruction;
use super::patterns::fixed_regex;
use super::punkt::count_sentences;
use super::pyjson::python_json_valid;
use super::pystr::{py_islower, py_isspace, py_isupper, py_strip, PY_S};
use super::treebank::count_capital_words;

/// The accepted answers of `detectable_format:constrained_response`.
const CONSTRAINED_RESPONSES: [&str; 3] = ["My answer is yes.", "My answer is no.", "My answer is maybe."];

/// The checkers' fixed regexes, compiled once.
struct Regexes {
    word_run: Regex,
    placeholder: Regex,
    bullet_star: Regex,
    bullet_dash: Regex,
    highlight: Regex,
    double_highlight: Regex,
    title: Regex,
    paragraph_divider: Regex,
}

fn re() -> &'static Regexes {
    static RE: OnceLock<Regexes> = OnceLock::new();
    RE.get_or_init(|| Regexes {
        word_run: fixed_regex(r"\w+"),
        placeholder: fixed_regex(r"\[.*?\]"),
        bullet_star: fixed_regex(&format!(r"(?m)^{PY_S}*\*[^*].*$")),
        bullet_dash: fixed_regex(&format!(r"(?m)^{PY_S}*-.*$")),
        highlight: fixed_regex(r"\*[^\n*]*\*"),
        double_highlight: fixed_regex(r"\*\*[^\n*]*\*\*"),
        title: fixed_regex(r"<<[^\n]+>>"),
        paragraph_divider: fixed_regex(&format!(r"{PY_S}?\*\*\*{PY_S}?")),
    })
}

impl Instruction {
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
}

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

// ---------------------------------------------------------------------------------------------
// Words and language
// ---------------------------------------------------------------------------------------------

/// `instructions_util.count_words`: the number of `\w+` runs (NLTK's `RegexpTokenizer`).
pub fn count_words(text: &str) -> usize {
    re().word_run.find_iter(text).count()
}

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
