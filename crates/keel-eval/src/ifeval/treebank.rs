//! `nltk.word_tokenize` (NLTK 3.10): Punkt sentences, each split by NLTK's improved Treebank
//! word tokenizer, step for step. It counts capitalized words for
//! `change_case:capital_word_frequency`.

use std::sync::OnceLock;

use regex::Regex;

use super::patterns::{fixed_regex, literal_ignorecase};
use super::punkt::punkt_spans;
use super::pystr::{is_py_re_word, is_rx_word, py_isspace, py_isupper};

/// The tokenizer's fixed regexes, in order of application.
struct Regexes {
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
        let r = fixed_regex;
        Regexes {
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
