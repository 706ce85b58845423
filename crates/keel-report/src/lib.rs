//! `keel report SWEEP_DIR`: what a sweep found, from the sweep directory alone
//! (`docs/sweep-layout.md`).
//!
//! [`summarize`] reads sweep.json, the base model's and every cell's status.json,
//! eval/results.json, eval/<task>.samples.jsonl and analyze.json, and computes a [`Summary`];
//! [`write_report`] writes it into the sweep directory as `summary.json`, `report.md`,
//! `report.html` (self-contained: inline CSS and SVG, no script, nothing fetched) and the
//! figures `pareto.svg`, `code_length.svg` (the same plane in ΔL, where the sweep measured it)
//! and `lr_curves.svg`.
//!
//! # Points
//! Done cells that differ only in their seed (`train.seed`) form one point: a (method, LR, α,
//! other axes). A point's domain score is the mean over its seeds of the mean of the domain
//! tasks' primary metrics (from results.json); likewise its general score. Deltas are against the
//! base model, scored on the same items. Post-hoc merges (WiSE-FT) are points too, labelled with
//! their α. Failed, unfinished and unreadable cells are listed with their errors, never silently
//! dropped.
//!
//! # Intervals: paired bootstrap over items × seeds
//! Each resample draws the point's seeds with replacement, then each task's items with
//! replacement, and scores the base and every drawn seed on the same drawn items, so the
//! interval reflects the item sample and the seed spread while pairing cancels item difficulty.
//! A task's score on a resample pools its items' verdicts (Σ passed / Σ count, so IFEval's
//! instruction level weighs checks, not items). 1000 resamples, 2.5th and 97.5th percentiles.
//! The generator is SplitMix64 seeded from a constant and a stable hash of the point's label and
//! task, so intervals are the same bytes on every run and adding a cell moves no other interval.
//! Where a samples file is missing or not on the base's items, the point has no interval and a
//! warning says why.
//!
//! # Pareto frontier
//! A point is on the frontier when no other point, nor the base at the origin, is at least as
//! good on both domain and general change and better on one.
//!
//! # Guideline
//! Among the points whose domain gain is at least 95% of the best domain gain, the report
//! recommends the one whose general score changes least for the worse; then it checks whether
//! plain `sft` at its smallest LR reaches the same threshold (whether a small LR alone gets
//! there). It warns where the recommendation rests on a difference below what the sample sizes
//! resolve: an interval that includes zero, or intervals of two compared points that overlap.
//! Where the sweep measured ΔL on domain and general data, the same rule is applied to ΔL (the
//! domain references' change in nats per token, and that of the general responses: the base's own
//! answers, or `analyze.general_data`'s), with a difference resolved only where both points ran
//! several seeds whose ranges are apart.
//!
//! # Determinism
//! summary.json is a pure function of the sweep directory's files: no clock, no paths, sorted
//! keys. It also leaves out the times in status.json (seconds, start and end), so that a sweep
//! killed and resumed gives the same summary.json as one run straight through; the report's time
//! table shows them. report.md and report.html add the CPU model of the machine making the
//! report, so they match on the same machine.

#![warn(missing_docs)]

mod code_length_guideline;
mod document;
mod figures;
mod guideline;
mod layout;
mod pareto;
mod plot;
mod report;
mod stats;
mod summary;

pub use code_length_guideline::{CodeLengthGuideline, CODE_LENGTH_RULE};
pub use figures::{code_length_svg, lr_curves_svg, pareto_svg};
pub use guideline::{Guideline, SmallLr, DOMAIN_SHARE, RULE};
pub use layout::EvalSettings;
pub use pareto::{frontier, Frontier};
pub use report::{
    delta_l_over_seeds, machine_description, points_at_lr_markdown, points_markdown, summary_json, write_report,
};
pub use stats::{BOOTSTRAP_SEED, RESAMPLES};
pub use summary::summarize;
pub use summary::{
    fmt_lr, fmt_number, BaseSummary, BaseTask, Bootstrap, CellSummary, ExcludedCell, Point, Provenance, Score, Summary,
    TaskScore,
};
