//! NLTK 3.10's Punkt sentence tokenizer (`PunktSentenceTokenizer`) with NLTK's English model
//! (`punkt_tab/english`, bundled as `punkt_english.txt`): sentence counts for
//! `length_constraints:number_sentences`, and the sentences `nltk.word_tokenize` starts from.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};
use regex::Regex;

use super::patterns::fixed_regex;
use super::pystr::{py_char_islower, py_char_isupper, py_isspace, py_rstrip};

/// The token-type regexes of Punkt.
struct Regexes {
    numeric: Regex,
    initial: Regex,
}

fn re() -> &'static Regexes {
    static RE: OnceLock<Regexes> = OnceLock::new();
    RE.get_or_init(|| Regexes {
        numeric: fixed_regex(r"^-?[.,]?\d[\d,.\-]*\.?$"),
        initial: fixed_regex(r"^[^\W\d]\.$"),
    })
}

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
    MODEL.get_or_init(|| parse_punkt_model(include_str!("punkt_english.txt")).expect("the bundled Punkt model parses"))
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
pub(super) fn punkt_spans(c: &[char]) -> Vec<(usize, usize)> {
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
