//! Keywords, forbidden words, section splitters and postscript markers as regexes: plain text
//! matched literally with Python's case-insensitive rules, anything else compiled as given (see
//! the module notes of `ifeval`).

use anyhow::{ensure, Context, Result};
use regex::Regex;

use super::pystr::{is_py_re_word, PY_S};

/// A keyword, forbidden word, section splitter or postscript marker: the text given in the data
/// and the regex keel matches it with (see the module notes).
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The text as the data gives it.
    pub text: String,
    /// What keel matches (see [`Pattern::found_between_boundaries`] for forbidden words).
    pub(super) regex: Regex,
    /// Plain text (no regex syntax): matched literally, with Python-`re` word boundaries where the
    /// official pattern has `\b`.
    literal: bool,
}

/// Compiles one of the IFEval code's own fixed regexes, which are known to compile.
pub(super) fn fixed_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a fixed regex compiles")
}

/// No character with a meaning in regex syntax (outside classes and verbose mode).
fn is_plain(s: &str) -> bool {
    !s.chars().any(|c| r"\.+*?()|[]{}^$".contains(c))
}

/// A regex matching `s` literally, case-insensitive as Python's `re.IGNORECASE` is (which also
/// matches `i` with `İ` and `ı`, unlike Unicode simple case folding).
pub(super) fn literal_ignorecase(s: &str) -> String {
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
    pub(super) fn keyword(text: &str) -> Result<Pattern> {
        ensure!(!text.is_empty(), "empty keyword");
        let literal = is_plain(text);
        let source = if literal { literal_ignorecase(text) } else { format!("(?i){text}") };
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "keyword")?, literal })
    }

    /// `re.search(r"\b" + word + r"\b", response, re.IGNORECASE)`.
    pub(super) fn bounded_word(text: &str) -> Result<Pattern> {
        ensure!(!text.is_empty(), "empty forbidden word");
        let literal = is_plain(text);
        let source = if literal { literal_ignorecase(text) } else { format!(r"(?i)\b{text}\b") };
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "forbidden word")?, literal })
    }

    /// `r"\s?" + splitter + r"\s?\d+\s?"` (case-sensitive).
    pub(super) fn section(text: &str) -> Result<Pattern> {
        let literal = is_plain(text);
        let body = if literal { regex::escape(text) } else { text.to_string() };
        let source = format!(r"{PY_S}?{body}{PY_S}?\d+{PY_S}?");
        Ok(Pattern { text: text.to_string(), regex: compile(&source, "section splitter")?, literal })
    }

    /// The postscript regex, searched in the lower-cased response (`re.MULTILINE`).
    pub(super) fn postscript(text: &str) -> Result<Pattern> {
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
    pub(super) fn found_between_boundaries(&self, text: &str) -> bool {
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
