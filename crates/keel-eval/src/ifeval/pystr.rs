//! Python's string semantics where they decide a verdict: `str.isspace`/`strip`, `isupper` and
//! `islower` (titlecase letters count as neither), and the word characters of the stdlib `re`
//! and of the `regex` module.

use std::sync::OnceLock;

use regex::Regex;

use super::patterns::fixed_regex;

/// One-character regexes for the two meanings of a word character.
struct Regexes {
    py_word: Regex,
    rx_word: Regex,
}

fn re() -> &'static Regexes {
    static RE: OnceLock<Regexes> = OnceLock::new();
    RE.get_or_init(|| Regexes { py_word: fixed_regex(r"^[\p{L}\p{N}_]$"), rx_word: fixed_regex(r"^\w$") })
}

/// Python's `str.isspace()` for one character: Unicode White_Space plus U+001C..U+001F.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `str.rstrip()` (no argument).
pub(super) fn py_rstrip(s: &str) -> &str {
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

/// Python's `str.isupper()` for one character.
pub(super) fn py_char_isupper(c: char) -> bool {
    c.is_uppercase() && !c.is_lowercase() && !is_titlecase(c)
}

/// Python's `str.islower()` for one character.
pub(super) fn py_char_islower(c: char) -> bool {
    c.is_lowercase() && !c.is_uppercase() && !is_titlecase(c)
}

/// A word character of Python's stdlib `re` (`str.isalnum()` or `_`): letters and numbers.
pub(super) fn is_py_re_word(c: char) -> bool {
    c == '_' || re().py_word.is_match(c.encode_utf8(&mut [0; 4]))
}

/// A word character of Rust's `regex` (and of Python's `regex` module, which NLTK uses).
pub(super) fn is_rx_word(c: char) -> bool {
    re().rx_word.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Python's `re` `\s`, for use inside the regexes that emulate the official ones.
pub(super) const PY_S: &str = r"[\s\x1C-\x1F]";
