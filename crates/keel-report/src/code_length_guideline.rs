//! The guideline read in code length: the accuracy guideline's rule applied to keel analyze's ΔL,
//! which still moves where a small model's accuracies sit near chance and cannot resolve anything.

use crate::guideline::DOMAIN_SHARE;
use crate::report::delta_l_over_seeds;
use crate::summary::{fmt_lr, Point};
use serde::Serialize;

/// The rule, as the report states it.
pub const CODE_LENGTH_RULE: &str = "The same rule in code length (keel analyze's ΔL against the base, nats per \
token; lower is better): among the points whose domain ΔL gain is at least 95% of the best, recommend the one whose \
general ΔL is smallest (ties: larger domain gain, then smaller LR); then set plain sft at its smallest LR beside it. \
A difference is resolved only where both points ran several seeds and their seed ranges are apart.";

/// Added to the rule where the general ΔL measures the base model's own answers.
const SHARPENING: &str = " A negative general ΔL on the base's own answers can mean the model sharpened on its own \
habits rather than kept its ability: read it with the accuracies, or measure written references (general_data).";

/// What the rule picks by code length.
#[derive(Debug, Clone, Serialize)]
pub struct CodeLengthGuideline {
    /// The rule.
    pub rule: String,
    /// The point with the most negative domain ΔL.
    pub best_domain: Option<String>,
    /// The domain ΔL a point must reach: 95% of the best (None when nothing lowers it).
    pub threshold: Option<f64>,
    /// Points at or below the threshold.
    pub eligible: Vec<String>,
    /// The recommended point.
    pub recommended: Option<String>,
    /// The guideline in sentences.
    pub text: Vec<String>,
    /// Differences the seeds do not resolve, and readings to check.
    pub warnings: Vec<String>,
}

/// A point with both ΔLs measured.
#[derive(Clone, Copy)]
struct Measured<'a> {
    point: &'a Point,
    domain: f64,
    general: f64,
}

impl Measured<'_> {
    fn domain_text(&self) -> String {
        let p = self.point;
        delta_l_over_seeds(p.delta_l_domain, p.delta_l_domain_seed_range, p.seeds.len())
    }

    fn general_text(&self) -> String {
        let p = self.point;
        delta_l_over_seeds(p.delta_l_general, p.delta_l_general_seed_range, p.seeds.len())
    }
}

/// Why two points' general ΔLs are not told apart by their seeds; None when their ranges are apart.
fn unresolved_general(a: &Measured, b: &Measured) -> Option<String> {
    match (a.point.seeds.len() < 2, b.point.seeds.len() < 2) {
        (true, true) => return Some("both ran a single seed".into()),
        (true, false) => return Some(format!("{} ran a single seed", a.point.label)),
        (false, true) => return Some(format!("{} ran a single seed", b.point.label)),
        (false, false) => {}
    }
    let ([a0, a1], [b0, b1]) = (a.point.delta_l_general_seed_range?, b.point.delta_l_general_seed_range?);
    (a0 <= b1 && b0 <= a1).then(|| "their seed ranges overlap".into())
}

/// Order of preference among eligible points: smaller general ΔL, smaller domain ΔL, smaller LR.
fn better(a: &Measured, b: &Measured) -> bool {
    let key = |m: &Measured| (-m.general, -m.domain, -m.point.lr);
    key(a).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Greater)
}

/// Apply the rule to the points that measured ΔL on both axes; None when none did.
/// `on_own_answers`: the general ΔL measures the base model's own answers, so a negative one is
/// flagged as possible sharpening.
pub fn code_length_guideline(points: &[Point], on_own_answers: bool) -> Option<CodeLengthGuideline> {
    let measured: Vec<Measured> = points
        .iter()
        .filter_map(|p| Some(Measured { point: p, domain: p.delta_l_domain?, general: p.delta_l_general? }))
        .collect();
    let best = *measured.iter().reduce(|a, b| if b.domain < a.domain { b } else { a })?;
    let mut g = CodeLengthGuideline {
        rule: if on_own_answers { format!("{CODE_LENGTH_RULE}{SHARPENING}") } else { CODE_LENGTH_RULE.into() },
        best_domain: Some(best.point.label.clone()),
        threshold: None,
        eligible: Vec::new(),
        recommended: None,
        text: Vec::new(),
        warnings: Vec::new(),
    };
    let left_out = points.len() - measured.len();
    if left_out > 0 {
        g.text.push(format!(
            "{left_out} of {} points have no ΔL (keel analyze did not run on them) and are left out.",
            points.len()
        ));
    }
    if best.domain >= 0.0 {
        g.text.push(format!(
            "No point lowers the domain ΔL below the base's (the best, {}, changes it by {}): as swept, fine-tuning does \
             not teach the domain's references; keep the base.",
            best.point.label,
            best.domain_text()
        ));
        return Some(g);
    }
    let threshold = DOMAIN_SHARE * best.domain;
    g.threshold = Some(threshold);
    let eligible: Vec<Measured> = measured.iter().copied().filter(|m| m.domain <= threshold).collect();
    g.eligible = eligible.iter().map(|m| m.point.label.clone()).collect();
    let recommended = eligible.iter().copied().reduce(|a, b| if better(&b, &a) { b } else { a }).unwrap_or(best);
    g.recommended = Some(recommended.point.label.clone());
    g.text.push(format!(
        "Recommended by code length: {}: domain ΔL {}, general ΔL {} ({} of {} points reach 95% of the best domain \
         ΔL gain, {:+.3} by {}).",
        recommended.point.label,
        recommended.domain_text(),
        recommended.general_text(),
        eligible.len(),
        measured.len(),
        best.domain,
        best.point.label
    ));
    if on_own_answers && recommended.general < 0.0 {
        g.warnings.push(format!(
            "{}'s general ΔL is negative ({}): the model finds its own general answers likelier than the base did, \
             which can be sharpening rather than kept ability; check the general accuracies.",
            recommended.point.label,
            recommended.general_text()
        ));
    }
    let runner_up = eligible.iter().copied().filter(|m| m.point.label != recommended.point.label).reduce(|a, b| {
        if better(&b, &a) {
            b
        } else {
            a
        }
    });
    if let Some(r) = &runner_up {
        if let Some(why) = unresolved_general(&recommended, r) {
            g.warnings.push(format!(
                "{} is preferred over {} by a general ΔL of {} vs {}: {why}, so the seeds cannot tell them apart.",
                recommended.point.label,
                r.point.label,
                recommended.general_text(),
                r.general_text()
            ));
        }
    }
    small_lr_beside(&mut g, &measured, recommended, best, runner_up.map(|r| r.point));
    Some(g)
}

/// Plain `sft` at its smallest LR beside the recommendation: its share of the best domain ΔL gain
/// and the general ΔL it pays for it (its resolution warned about unless it is the runner-up, whose
/// warning is already there).
fn small_lr_beside(
    g: &mut CodeLengthGuideline,
    measured: &[Measured],
    recommended: Measured,
    best: Measured,
    runner_up: Option<&Point>,
) {
    let smallest_first =
        |a: &Measured, b: &Measured| b.point.lr < a.point.lr || (b.point.lr == a.point.lr && b.domain < a.domain);
    let sft = measured.iter().copied().filter(|m| m.point.method == "sft" && m.point.kind == "train");
    let Some(candidate) = sft.reduce(|a, b| if smallest_first(&a, &b) { b } else { a }) else {
        return;
    };
    let lr = fmt_lr(candidate.point.lr);
    if candidate.point.label == recommended.point.label {
        g.text.push(format!("A small LR alone gets there: plain sft at its smallest LR ({lr}) is the recommendation."));
        return;
    }
    let gain = if candidate.domain < 0.0 {
        format!(
            "gets {:.0}% of the best domain ΔL gain, {},",
            100.0 * candidate.domain / best.domain,
            candidate.domain_text()
        )
    } else {
        format!("does not lower the domain ΔL ({}),", candidate.domain_text())
    };
    g.text.push(format!(
        "Plain sft at its smallest LR ({lr}) {gain} at a general ΔL of {} against the recommendation's {}.",
        candidate.general_text(),
        recommended.general_text()
    ));
    if runner_up.is_some_and(|r| r.label == candidate.point.label) {
        return;
    }
    if let Some(why) = unresolved_general(&candidate, &recommended) {
        g.warnings.push(format!(
            "{}'s general ΔL {} and {}'s {}: {why}, so the seeds cannot resolve this difference.",
            candidate.point.label,
            candidate.general_text(),
            recommended.point.label,
            recommended.general_text()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guideline::tests::point;

    /// A point with the given mean ΔLs over `seeds` seeds, spread ± `spread` around them.
    fn measured(method: &str, lr: f64, domain: f64, general: f64, seeds: u64, spread: f64) -> Point {
        let mut p = point(method, lr, 0.0, 0.0, 0.01);
        p.seeds = (0..seeds).collect();
        p.delta_l_domain = Some(domain);
        p.delta_l_general = Some(general);
        p.delta_l_domain_seed_range = Some([domain - spread, domain + spread]);
        p.delta_l_general_seed_range = Some([general - spread, general + spread]);
        p
    }

    #[test]
    fn recommends_the_smallest_general_delta_l_within_95_percent_of_the_best_domain_gain() {
        let points = [
            measured("sft", 1e-5, -0.25, 0.015, 3, 0.001),
            measured("sft", 1e-4, -0.35, 0.063, 3, 0.005),
            measured("lora", 1e-3, -0.34, 0.065, 3, 0.001),
            measured("talr", 1e-4, 0.18, -0.05, 3, 0.001),
            point("wise_ft", 1e-3, 0.0, 0.0, 0.01),
        ];
        let g = code_length_guideline(&points, true).unwrap();
        assert_eq!(g.best_domain.as_deref(), Some("sft lr=1e-4"));
        assert!((g.threshold.unwrap() + 0.3325).abs() < 1e-12);
        assert_eq!(g.eligible, ["sft lr=1e-4", "lora lr=1e-3"]);
        assert_eq!(g.recommended.as_deref(), Some("sft lr=1e-4"));
        assert!(g.text[0].starts_with("1 of 5 points have no ΔL"), "{:?}", g.text);
        assert!(g.text[1].contains("(2 of 4 points reach 95%"), "{:?}", g.text);
        assert!(g.text[2].starts_with("Plain sft at its smallest LR (1e-5) gets 71% of the best"), "{:?}", g.text);
        // +0.063 ± 0.005 and +0.065 ± 0.001 overlap; +0.015 ± 0.001 is apart from +0.063.
        assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
        assert!(g.warnings[0].contains("preferred over lora lr=1e-3") && g.warnings[0].contains("seed ranges overlap"));
    }

    #[test]
    fn single_seeds_and_a_negative_general_delta_l_are_warned_about() {
        let points = [measured("talr", 1e-4, -0.30, -0.02, 1, 0.0), measured("sft", 1e-5, -0.29, 0.01, 3, 0.001)];
        let g = code_length_guideline(&points, true).unwrap();
        assert_eq!(g.recommended.as_deref(), Some("talr lr=1e-4"));
        assert!(g.warnings[0].contains("sharpening"), "{:?}", g.warnings);
        assert!(g.warnings[1].contains("talr lr=1e-4 ran a single seed"), "{:?}", g.warnings);
        assert_eq!(g.warnings.len(), 2, "the runner-up is plain sft at its smallest LR, warned once: {:?}", g.warnings);
        // On written references a negative general ΔL is no sign of sharpening.
        let g = code_length_guideline(&points, false).unwrap();
        assert!(!g.rule.contains("sharpened") && !g.warnings.iter().any(|w| w.contains("sharpening")), "{g:?}");
        assert_eq!(g.warnings.len(), 1);
    }

    #[test]
    fn a_small_lr_that_gets_there_is_the_recommendation() {
        let points = [measured("sft", 1e-5, -0.33, 0.01, 3, 0.001), measured("sft", 1e-4, -0.34, 0.06, 3, 0.001)];
        let g = code_length_guideline(&points, true).unwrap();
        assert_eq!(g.recommended.as_deref(), Some("sft lr=1e-5"));
        assert!(g.text[1].starts_with("A small LR alone gets there"), "{:?}", g.text);
        assert!(g.warnings.is_empty(), "{:?}", g.warnings);

        let points = [measured("sft", 1e-5, 0.02, 0.01, 3, 0.001), measured("talr", 1e-4, -0.3, 0.05, 3, 0.001)];
        let g = code_length_guideline(&points, true).unwrap();
        assert!(g.text[1].contains("(1e-5) does not lower the domain ΔL (+0.020 (+0.019 to +0.021))"), "{:?}", g.text);
    }

    #[test]
    fn nothing_lowering_the_domain_delta_l_keeps_the_base_and_no_delta_l_gives_no_rule() {
        let g = code_length_guideline(&[measured("talr", 1e-5, 0.06, -0.03, 3, 0.001)], true).unwrap();
        assert!(g.recommended.is_none() && g.threshold.is_none());
        assert!(g.text[0].contains("keep the base"), "{:?}", g.text);
        assert!(code_length_guideline(&[point("sft", 1e-5, 0.1, -0.1, 0.01)], true).is_none());
        assert!(code_length_guideline(&[], true).is_none());
    }
}
