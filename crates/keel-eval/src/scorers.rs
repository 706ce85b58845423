//! Answer extraction and scoring of generated responses: GSM8K (lm-evaluation-harness's strict
//! and flexible matches) and MedCalc-Bench (the per-type rules of method.md).
//! Garbage, empty or endless output scores as wrong; nothing here panics on model text.

use regex::Regex;
use std::sync::LazyLock;

static GSM8K_STRICT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid regex"));
static GSM8K_FLEXIBLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid regex"));

/// lm-eval's normalization before exact match: drop `,` and `$`, everything through `#### `, and
/// one trailing `.`.
fn gsm8k_clean(s: &str) -> String {
    let s = match s.rfind("#### ") {
        Some(i) => &s[i + 5..],
        None => s,
    };
    let s: String = s.chars().filter(|&c| c != ',' && c != '$').collect();
    s.strip_suffix('.').unwrap_or(&s).trim().to_string()
}

/// The `#### N` answer (strict) of a response, if any.
pub fn gsm8k_strict(response: &str) -> Option<String> {
    GSM8K_STRICT.captures(response).map(|c| c[1].to_string())
}

/// The last number of a response (flexible).
pub fn gsm8k_flexible(response: &str) -> Option<String> {
    GSM8K_FLEXIBLE
        .captures_iter(response)
        .last()
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .map(|m| m.as_str().to_string())
}

/// Whether an extracted GSM8K answer equals the reference answer (the worked solution ending in
/// `#### N`, or N alone).
pub fn gsm8k_correct(extracted: Option<&str>, reference: &str) -> bool {
    extracted.is_some_and(|e| gsm8k_clean(e) == gsm8k_clean(reference))
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+").expect("valid regex"));
static DATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d{1,2})/(\d{1,2})/(\d{4})").expect("valid regex"));
static WEEKS_DAYS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(\d+)\s*'?\s*weeks?\b.*?(\d+)\s*'?\s*days?\b").expect("valid regex"));

/// The text a MedCalc response gives as its answer: what follows the last `Answer:`, else the
/// whole response.
pub fn medcalc_answer_text(response: &str) -> &str {
    match response.rfind("Answer:") {
        Some(i) => response[i + 7..].trim(),
        None => response.trim(),
    }
}

/// Scores a response against a MedCalc-Bench row: `date` answers must match exactly
/// (MM/DD/YYYY, leading zeros optional); gestational-age answers must give the same weeks and
/// days; `integer` answers are rounded, then compared exactly; `decimal` answers must lie within
/// [lower, upper].
pub fn medcalc_correct(output_type: &str, truth: &str, lower: &str, upper: &str, response: &str) -> bool {
    let text = medcalc_answer_text(response);
    if output_type == "date" {
        let norm =
            |s: &str| DATE.captures(s).map(|c| (c[1].parse::<u32>().ok(), c[2].parse::<u32>().ok(), c[3].to_string()));
        return matches!((norm(text), norm(truth)), (Some(a), Some(b)) if a == b);
    }
    if let Some(t) = WEEKS_DAYS.captures(truth) {
        return WEEKS_DAYS.captures(text).is_some_and(|r| r[1] == t[1] && r[2] == t[2]);
    }
    let Some(value) = NUMBER.find(text).and_then(|m| m.as_str().replace(',', "").parse::<f64>().ok()) else {
        return false;
    };
    match output_type {
        "integer" => truth.trim().parse::<f64>().is_ok_and(|t| value.round() == t.round()),
        _ => match (lower.trim().parse::<f64>(), upper.trim().parse::<f64>()) {
            (Ok(lo), Ok(hi)) => value >= lo && value <= hi,
            _ => false,
        },
    }
}

/// The ESCI label a response gives: the first word after the last `Answer:` (or of the whole
/// response), as Exact, Substitute, Complement or Irrelevant.
pub fn esci_answer(response: &str) -> Option<String> {
    let word = medcalc_answer_text(response).split(|c: char| !c.is_alphanumeric()).find(|w| !w.is_empty())?;
    keel_data::dataset::esci_label(word).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_strict_and_flexible_on_the_formats_models_write() {
        let reference = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72";
        assert!(gsm8k_correct(gsm8k_strict("so 48+24=72\n#### 72").as_deref(), reference));
        assert!(!gsm8k_correct(gsm8k_strict("The answer is 72.").as_deref(), reference), "strict needs ####");
        assert!(gsm8k_correct(gsm8k_flexible("The answer is 72.").as_deref(), reference));
        assert!(gsm8k_correct(gsm8k_flexible("It costs $1,000 in total.").as_deref(), "#### 1000"));
        assert!(gsm8k_correct(gsm8k_flexible("She ends with 1000.").as_deref(), "#### 1,000"));
        assert!(gsm8k_correct(gsm8k_flexible("The change is -5 degrees").as_deref(), "#### -5"));
        assert!(gsm8k_correct(gsm8k_strict("#### -5").as_deref(), "#### -5"));
        assert!(
            !gsm8k_correct(gsm8k_flexible("It is 7, not 8").as_deref(), "#### 7"),
            "flexible takes the last number"
        );
        assert!(!gsm8k_correct(gsm8k_flexible("").as_deref(), "#### 7"));
        assert!(!gsm8k_correct(gsm8k_flexible("no digits at all, just words").as_deref(), "#### 7"));
        assert!(
            !gsm8k_correct(gsm8k_flexible(&"9".repeat(10_000)).as_deref(), "#### 7"),
            "endless output is just wrong"
        );
    }

    #[test]
    fn esci_labels_by_name_or_letter() {
        assert_eq!(esci_answer("The product is a match.\nAnswer: Exact").as_deref(), Some("Exact"));
        assert_eq!(esci_answer("Answer: s").as_deref(), Some("Substitute"));
        assert_eq!(esci_answer("Answer: **Complement**").as_deref(), Some("Complement"));
        assert_eq!(esci_answer("Irrelevant."), Some("Irrelevant".into()));
        assert_eq!(esci_answer("Answer: maybe"), None);
        assert_eq!(esci_answer(""), None);
    }

    #[test]
    fn medcalc_rules_at_and_beyond_the_limits() {
        // decimal: within [lower, upper], inclusive.
        let dec = |r: &str| medcalc_correct("decimal", "25.238", "23.9761", "26.4999", r);
        assert!(dec("Step 1 ... Answer: 25.2") && dec("Answer: 23.9761") && dec("Answer: 26.4999 mL/min"));
        assert!(!dec("Answer: 23.97") && !dec("Answer: 26.5") && !dec("Answer: unknown") && !dec(""));
        // integer: rounded, then exact.
        let int = |r: &str| medcalc_correct("integer", "4", "4", "4", r);
        assert!(int("Answer: 4") && int("Answer: 4.4") && int("The score is 3.6"));
        assert!(!int("Answer: 4.5") && !int("Answer: 5") && !int("Answer: 3.49"));
        // date: exact day.
        let date = |r: &str| medcalc_correct("date", "09/23/2014", "09/23/2014", "09/23/2014", r);
        assert!(date("Answer: 09/23/2014") && date("Answer: 9/23/2014"));
        assert!(!date("Answer: 09/24/2014") && !date("Answer: 2014-09-23"));
        // gestational age: weeks and days.
        let ga = |r: &str| {
            medcalc_correct("integer", "('14 weeks', '1 days')", "('14 weeks', '1 days')", "('14 weeks', '1 days')", r)
        };
        assert!(ga("Answer: 14 weeks and 1 day") && ga("Answer: ('14 weeks', '1 days')"));
        assert!(!ga("Answer: 14 weeks and 2 days") && !ga("Answer: 14"));
        // The last Answer: line counts.
        assert!(int("Answer: 7\nWait, recomputing.\nAnswer: 4") && !int("Answer: 4\nAnswer: 7"));
    }
}
