//! `keel report SWEEP_DIR`: the sweep's trade-off as summary.json, report.md, report.html and
//! SVG figures (see the keel-report crate for the rule and the statistics).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// `keel report --help`'s long description.
pub const LONG_ABOUT: &str = "Summarize a sweep directory written by `keel sweep run` (docs/sweep-layout.md).\n\n\
Writes into SWEEP_DIR: summary.json (the numbers, a pure function of the directory's files; run times left out so that a resumed sweep's equals an uninterrupted one's), report.md, \
report.html (self-contained: inline SVG, no network), pareto.svg, code_length.svg (the same points by ΔL on \
domain against general data, where the sweep ran keel analyze) and lr_curves.svg.\n\n\
The report shows domain against general score change per (method, LR, α, other axes), mean over seeds with paired \
bootstrap 95% intervals over items × seeds; the Pareto frontier; score change against log LR per method; ΔL per \
cell; a table per task; failed and missing cells; provenance; and a guideline: among points within 95% of the best \
domain gain, the one losing the least general ability, and whether plain sft at its smallest LR gets there; where the sweep measured ΔL on domain and general data, the same rule by ΔL, resolved only by seed ranges that are apart.";

#[derive(Args)]
pub struct ReportArgs {
    /// The sweep directory (holds sweep.json, base/ and cells/).
    sweep_dir: PathBuf,
}

pub fn run_report(a: ReportArgs) -> Result<()> {
    let summary = keel_report::summarize(&a.sweep_dir)?;
    for path in keel_report::write_report(&a.sweep_dir, &summary)? {
        println!("wrote {}", path.display());
    }
    let p = &summary.provenance;
    println!("{} points from {} of {} cells done", summary.points.len(), p.cells_done, p.cells_total);
    for cell in &summary.excluded {
        println!(
            "not in the report: {} {} ({}){}",
            cell.id,
            cell.label,
            cell.state,
            cell.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
        );
    }
    let g = &summary.guideline;
    print_rule("guideline", &g.text, &g.warnings);
    if let Some(c) = &g.code_length {
        print_rule("guideline by code length", &c.text, &c.warnings);
    }
    Ok(())
}

fn print_rule(title: &str, picks: &[String], warnings: &[String]) {
    println!("{title}:");
    for line in picks {
        println!("  {line}");
    }
    for warning in warnings {
        println!("  warning: {warning}");
    }
}
