//! The guideline: a stated rule applied to the points, with warnings where the sample sizes
//! cannot resolve the differences it rests on.

use crate::code_length_guideline::{code_length_guideline, CodeLengthGuideline};
use crate::summary::{fmt_lr, Point, Score};
use serde::Serialize;

/// Share of the best domain gain a point must reach to be considered.
pub const DOMAIN_SHARE: f64 = 0.95;

/// The rule, as the report states it.
pub const RULE: &str = "Among the points whose domain gain is at least 95% of the best domain gain, recommend the one \
whose general score changes least for the worse (largest general change; ties: larger domain gain, then smaller LR). \
Then check whether plain sft at its smallest LR reaches the same 95% threshold: whether a small learning rate alone \
gets there. Where 95% intervals overlap zero or each other, the difference is below what the sample sizes resolve.";

/// Plain SFT at its smallest learning rate, measured against the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct SmallLr {
    /// The point's label.
    pub label: String,
    /// Its learning rate (the smallest of the `sft` points).
    pub lr: f64,
    /// Its domain change.
    pub domain_delta: f64,
    /// Its general change.
    pub general_delta: f64,
    /// Whether its domain change reaches 95% of the best.
    pub reaches_threshold: bool,
    /// Whether it is the recommended point.
    pub is_recommended: bool,
}

/// What the rule picks.
#[derive(Debug, Clone, Serialize)]
pub struct Guideline {
    /// The rule.
    pub rule: String,
    /// The point with the largest domain change.
    pub best_domain: Option<String>,
    /// 95% of the best domain change (None when nothing gains).
    pub threshold: Option<f64>,
    /// Points at or above the threshold.
    pub eligible: Vec<String>,
    /// The recommended point.
    pub recommended: Option<String>,
    /// Plain `sft` at its smallest LR (None without `sft` points).
    pub small_lr_sft: Option<SmallLr>,
    /// The guideline in sentences.
    pub text: Vec<String>,
    /// Differences below what the sample sizes resolve.
    pub warnings: Vec<String>,
    /// The same rule by ΔL, where the sweep ran keel analyze.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_length: Option<CodeLengthGuideline>,
}

fn signed(x: f64) -> String {
    format!("{x:+.3}")
}

fn with_interval(s: &Score) -> String {
    match s.ci95 {
        Some([lo, hi]) => format!("{} [{lo:+.3}, {hi:+.3}]", signed(s.delta)),
        None => format!("{} (no interval)", signed(s.delta)),
    }
}

/// Whether two intervals overlap; None when either is missing.
fn overlap(a: &Score, b: &Score) -> Option<bool> {
    let ([a0, a1], [b0, b1]) = (a.ci95?, b.ci95?);
    Some(a0 <= b1 && b0 <= a1)
}

/// Order of preference among eligible points: larger general change, larger domain change, smaller LR.
fn better(a: &Point, b: &Point) -> bool {
    let key = |p: &Point| (p.general.delta, p.domain.delta, -p.lr);
    key(a).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Greater)
}

/// Apply the rule to `points` (in summary order; ties keep the earlier point), by accuracy and by
/// code length (`on_own_answers`: the general ΔL measures the base model's own answers).
pub fn guideline(points: &[Point], on_own_answers: bool) -> Guideline {
    Guideline { code_length: code_length_guideline(points, on_own_answers), ..by_accuracy(points) }
}

fn by_accuracy(points: &[Point]) -> Guideline {
    let mut g = Guideline {
        rule: RULE.into(),
        best_domain: None,
        threshold: None,
        eligible: Vec::new(),
        recommended: None,
        small_lr_sft: None,
        text: Vec::new(),
        warnings: Vec::new(),
        code_length: None,
    };
    let Some(best) = points.iter().reduce(|a, b| if b.domain.delta > a.domain.delta { b } else { a }) else {
        g.text.push("No cell finished: there is nothing to recommend yet.".into());
        return g;
    };
    g.best_domain = Some(best.label.clone());
    if best.domain.delta <= 0.0 {
        g.text.push(format!(
            "No point improves the domain score over the base (the best, {}, changes it by {}): as swept, fine-tuning does \
             not pay; keep the base.",
            best.label,
            with_interval(&best.domain)
        ));
        return g;
    }
    let threshold = DOMAIN_SHARE * best.domain.delta;
    g.threshold = Some(threshold);
    let eligible: Vec<&Point> = points.iter().filter(|p| p.domain.delta >= threshold).collect();
    g.eligible = eligible.iter().map(|p| p.label.clone()).collect();
    let recommended = eligible.iter().copied().reduce(|a, b| if better(b, a) { b } else { a }).unwrap_or(best);
    g.recommended = Some(recommended.label.clone());
    g.text.push(format!(
        "Recommended: {}: domain {}, general {} ({} of {} points reach 95% of the best domain gain, {} by {}).",
        recommended.label,
        with_interval(&recommended.domain),
        with_interval(&recommended.general),
        eligible.len(),
        points.len(),
        signed(best.domain.delta),
        best.label
    ));
    resolution_warnings(&mut g, recommended, &eligible);
    small_lr_check(&mut g, points, recommended, best, threshold);
    g
}

/// Warn where the recommendation rests on differences the intervals do not resolve.
fn resolution_warnings(g: &mut Guideline, recommended: &Point, eligible: &[&Point]) {
    if !recommended.domain.resolved() {
        g.warnings.push(format!(
            "{}'s domain gain {} is not resolved: its interval includes zero (or is missing).",
            recommended.label,
            with_interval(&recommended.domain)
        ));
    }
    if !recommended.general.resolved() {
        g.warnings.push(format!(
            "{}'s general change {} is not resolved from zero at these sample sizes.",
            recommended.label,
            with_interval(&recommended.general)
        ));
    }
    let runner_up =
        eligible
            .iter()
            .copied()
            .filter(|p| p.label != recommended.label)
            .reduce(|a, b| if better(b, a) { b } else { a });
    if let Some(r) = runner_up {
        if overlap(&recommended.general, &r.general) != Some(false) {
            g.warnings.push(format!(
                "{} is preferred over {} by a general change of {} vs {}: the intervals overlap, so the sample sizes \
                 cannot tell them apart.",
                recommended.label,
                r.label,
                with_interval(&recommended.general),
                with_interval(&r.general)
            ));
        }
    }
}

/// Whether plain `sft` at its smallest LR gets within 95% of the best domain gain.
fn small_lr_check(g: &mut Guideline, points: &[Point], recommended: &Point, best: &Point, threshold: f64) {
    // The smallest sft LR; at it, the point with the largest domain gain (other axes may split it).
    let smallest_first = |a: &Point, b: &Point| b.lr < a.lr || (b.lr == a.lr && b.domain.delta > a.domain.delta);
    let sft = points.iter().filter(|p| p.method == "sft" && p.kind == "train");
    let Some(candidate) = sft.reduce(|a, b| if smallest_first(a, b) { b } else { a }) else {
        g.text
            .push("The sweep has no plain sft points, so whether a small LR alone gets there is not measured.".into());
        return;
    };
    let smallest_lr = candidate.lr;
    let reaches = candidate.domain.delta >= threshold;
    let is_recommended = candidate.label == recommended.label;
    let share = 100.0 * candidate.domain.delta / best.domain.delta;
    let sentence = if is_recommended {
        format!(
            "A small LR alone gets there: plain sft at its smallest LR ({}) is the recommendation.",
            fmt_lr(smallest_lr)
        )
    } else if reaches {
        format!(
            "Plain sft at its smallest LR ({}) also reaches the threshold ({share:.0}% of the best domain gain), with \
             general change {} against the recommendation's {}.",
            fmt_lr(smallest_lr),
            with_interval(&candidate.general),
            with_interval(&recommended.general)
        )
    } else {
        format!(
            "A small LR alone does not get there: plain sft at {} reaches {share:.0}% of the best domain gain (domain {}).",
            fmt_lr(smallest_lr),
            with_interval(&candidate.domain)
        )
    };
    g.text.push(sentence);
    if !is_recommended {
        let (axis, a, b) = if reaches {
            ("general change", &candidate.general, &recommended.general)
        } else {
            ("domain gain", &candidate.domain, &best.domain)
        };
        if overlap(a, b) != Some(false) {
            g.warnings.push(format!(
                "{}'s {axis} {} and {}'s {} overlap: the sample sizes cannot resolve this difference.",
                candidate.label,
                with_interval(a),
                if reaches { &recommended.label } else { &best.label },
                with_interval(b)
            ));
        }
    }
    g.small_lr_sft = Some(SmallLr {
        label: candidate.label.clone(),
        lr: smallest_lr,
        domain_delta: candidate.domain.delta,
        general_delta: candidate.general.delta,
        reaches_threshold: reaches,
        is_recommended,
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A point with the given changes and intervals of half-width `half` around them.
    pub(crate) fn point(method: &str, lr: f64, domain: f64, general: f64, half: f64) -> Point {
        let score = |delta: f64| Score {
            score: 0.5 + delta,
            delta,
            ci95: Some([delta - half, delta + half]),
            seed_range: [delta; 2],
        };
        Point {
            label: format!("{method} lr={}", fmt_lr(lr)),
            series: method.into(),
            method: method.into(),
            kind: "train".into(),
            lr,
            alpha: None,
            axes: BTreeMap::new(),
            seeds: vec![0],
            cells: vec![],
            domain: score(domain),
            general: score(general),
            tasks: BTreeMap::new(),
            delta_l_domain: None,
            delta_l_general: None,
            delta_l_domain_seed_range: None,
            delta_l_general_seed_range: None,
            pareto: false,
        }
    }

    #[test]
    fn recommends_the_least_general_loss_within_95_percent_of_the_best_domain_gain() {
        let points = [
            point("sft", 1e-6, 0.20, -0.01, 0.01),
            point("sft", 1e-5, 0.30, -0.20, 0.01),
            point("talr", 1e-5, 0.29, -0.05, 0.01),
            point("l2", 1e-5, 0.25, -0.02, 0.01),
        ];
        let g = guideline(&points, true);
        assert_eq!(g.best_domain.as_deref(), Some("sft lr=1e-5"));
        assert!((g.threshold.unwrap() - 0.285).abs() < 1e-12);
        assert_eq!(g.eligible, ["sft lr=1e-5", "talr lr=1e-5"]);
        assert_eq!(g.recommended.as_deref(), Some("talr lr=1e-5"));
        let small = g.small_lr_sft.unwrap();
        assert_eq!(
            (small.label.as_str(), small.reaches_threshold, small.is_recommended),
            ("sft lr=1e-6", false, false)
        );
        assert!(g.text[1].starts_with("A small LR alone does not get there"), "{:?}", g.text);
        assert!(g.warnings.is_empty(), "narrow intervals resolve everything: {:?}", g.warnings);
    }

    #[test]
    fn a_small_lr_that_gets_there_is_recommended() {
        let points = [point("sft", 1e-6, 0.29, -0.01, 0.01), point("sft", 1e-5, 0.30, -0.20, 0.01)];
        let g = guideline(&points, true);
        assert_eq!(g.recommended.as_deref(), Some("sft lr=1e-6"));
        assert!(g.small_lr_sft.unwrap().is_recommended);
        assert!(g.text[1].starts_with("A small LR alone gets there"));
    }

    #[test]
    fn overlapping_intervals_are_warned_about() {
        let points = [point("talr", 1e-5, 0.30, -0.02, 0.05), point("sft", 1e-5, 0.30, -0.04, 0.05)];
        let g = guideline(&points, true);
        assert_eq!(g.recommended.as_deref(), Some("talr lr=1e-5"));
        assert!(g.warnings.iter().any(|w| w.contains("not resolved from zero")), "{:?}", g.warnings);
        assert!(g.warnings.iter().any(|w| w.contains("cannot tell them apart")), "{:?}", g.warnings);
    }

    #[test]
    fn nothing_gaining_recommends_nothing() {
        let g = guideline(&[point("sft", 1e-5, -0.01, -0.2, 0.01)], true);
        assert!(g.recommended.is_none() && g.threshold.is_none());
        assert!(g.text[0].contains("keep the base"));
        assert!(guideline(&[], true).text[0].contains("No cell finished"));
    }
}
