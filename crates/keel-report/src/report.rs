//! The report's content, in order, and writing its files.

use crate::document::{bold_if, html, markdown, text, Block, Inline, Span};
use crate::figures::{code_length_svg, lr_curves_svg, pareto_svg};
use crate::summary::{fmt_lr, fmt_number, Score, Summary};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

fn signed(x: f64) -> String {
    format!("{x:+.3}")
}

fn optional(x: Option<f64>) -> String {
    x.map_or("—".into(), signed)
}

/// A point's mean ΔL, followed by the seeds' smallest and largest when it has several.
pub fn delta_l_over_seeds(mean: Option<f64>, range: Option<[f64; 2]>, seeds: usize) -> String {
    match (mean, range) {
        (Some(m), Some([lo, hi])) if seeds > 1 => format!("{m:+.3} ({lo:+.3} to {hi:+.3})"),
        _ => optional(mean),
    }
}

fn interval(s: &Score) -> String {
    s.ci95.map_or("—".into(), |[lo, hi]| format!("[{lo:+.3}, {hi:+.3}]"))
}

fn yes_no(b: bool) -> Inline {
    text(if b { "yes" } else { "" })
}

/// The guideline section: rule, what it picks, and its resolution warnings.
fn guideline_blocks(summary: &Summary) -> Vec<Block> {
    let g = &summary.guideline;
    let mut blocks = vec![Block::Heading(2, "Guideline".into())];
    rule_blocks(&mut blocks, &g.rule, &g.text, &g.warnings, "Below what the sample sizes resolve:");
    if let Some(c) = &g.code_length {
        blocks.push(Block::Heading(3, "By code length".into()));
        rule_blocks(&mut blocks, &c.rule, &c.text, &c.warnings, "To check before relying on it:");
    }
    blocks
}

/// A rule, what it picks, and (under `warnings_title`) its warnings, if any.
fn rule_blocks(blocks: &mut Vec<Block>, rule: &str, picks: &[String], warnings: &[String], warnings_title: &str) {
    blocks.push(Block::Paragraph(vec![Span::Bold("Rule.".into()), Span::Text(format!(" {rule}"))]));
    blocks.push(Block::List(picks.iter().map(|t| text(t.clone())).collect()));
    if !warnings.is_empty() {
        blocks.push(Block::Paragraph(vec![Span::Bold(warnings_title.into())]));
        blocks.push(Block::List(warnings.iter().map(|w| text(w.clone())).collect()));
    }
}

/// One row per point: the Pareto plot's numbers.
fn points_table(summary: &Summary) -> Block {
    let header = [
        "point",
        "seeds",
        "Δ domain",
        "95% interval",
        "Δ general",
        "95% interval",
        "ΔL domain",
        "ΔL general",
        "Pareto",
    ];
    let mut rows: Vec<Vec<Inline>> = vec![vec![
        text("base"),
        text("—"),
        text("0"),
        text("—"),
        text("0"),
        text("—"),
        text("0"),
        text("0"),
        yes_no(summary.base_on_frontier),
    ]];
    for p in &summary.points {
        rows.push(vec![
            text(p.label.clone()),
            text(p.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
            bold_if(p.domain.resolved(), signed(p.domain.delta)),
            text(interval(&p.domain)),
            bold_if(p.general.resolved(), signed(p.general.delta)),
            text(interval(&p.general)),
            text(delta_l_over_seeds(p.delta_l_domain, p.delta_l_domain_seed_range, p.seeds.len())),
            text(delta_l_over_seeds(p.delta_l_general, p.delta_l_general_seed_range, p.seeds.len())),
            yes_no(p.pareto),
        ]);
    }
    Block::Table { header: header.map(String::from).to_vec(), rows }
}

/// One table per task: absolute scores, deltas, intervals, n, Pareto membership.
fn task_tables(summary: &Summary) -> Vec<Block> {
    let mut blocks = vec![
        Block::Heading(2, "Per task".into()),
        Block::Paragraph(text(
            "Scores are means over seeds of each task's primary metric; Δ is against the base; the 95% interval is the \
             paired bootstrap over items × seeds. A bold Δ has an interval that excludes zero.",
        )),
    ];
    let eval = &summary.provenance.eval;
    let suites =
        eval.domain_tasks.iter().map(|t| (t, "domain")).chain(eval.general_tasks.iter().map(|t| (t, "general")));
    for (task, suite) in suites {
        let base = &summary.base.tasks[task];
        blocks.push(Block::Heading(3, format!("{task} ({suite}; metric {}; n = {} items)", base.metric, base.n)));
        let header = ["point", "score", "Δ", "95% interval", "n × seeds", "Pareto"];
        let mut rows = vec![vec![
            text("base"),
            text(format!("{:.3}", base.score)),
            text("0"),
            text("—"),
            text(base.n.to_string()),
            yes_no(summary.base_on_frontier),
        ]];
        for p in &summary.points {
            let t = &p.tasks[task];
            rows.push(vec![
                text(p.label.clone()),
                text(format!("{:.3}", t.score.score)),
                bold_if(t.score.resolved(), signed(t.score.delta)),
                text(interval(&t.score)),
                text(format!("{} × {}", t.n, p.seeds.len())),
                yes_no(p.pareto),
            ]);
        }
        blocks.push(Block::Table { header: header.map(String::from).to_vec(), rows });
    }
    blocks
}

/// Code-length change of every done cell.
fn delta_l_table(summary: &Summary) -> Vec<Block> {
    let header = ["cell", "method", "LR", "seed", "α", "domain score", "general score", "ΔL domain", "ΔL general"];
    let rows = summary
        .cells
        .iter()
        .filter(|c| c.state == "done")
        .map(|c| {
            vec![
                vec![Span::Code(c.id.clone())],
                text(c.method.clone()),
                text(fmt_lr(c.lr)),
                text(c.seed.to_string()),
                text(c.alpha.map_or("—".into(), fmt_number)),
                text(c.domain_score.map_or("—".into(), |s| format!("{s:.3}"))),
                text(c.general_score.map_or("—".into(), |s| format!("{s:.3}"))),
                text(optional(c.delta_l_domain)),
                text(optional(c.delta_l_general)),
            ]
        })
        .collect();
    let base_lengths = format!(
        "The base's code lengths: domain {}, general {} nats/token.",
        summary.base.domain_code_length.map_or("not measured".into(), |x| format!("{x:.4}")),
        summary.base.general_code_length.map_or("not measured".into(), |x| format!("{x:.4}"))
    );
    vec![
        Block::Heading(2, "Code-length change ΔL per cell".into()),
        Block::Paragraph(text(format!(
            "ΔL is the change of the mean per-token code length (nats) of reference responses against the base \
             (analyze.json): below zero on domain data is learning, above zero on general data is forgetting. {base_lengths}"
        ))),
        Block::Table { header: header.map(String::from).to_vec(), rows },
    ]
}

/// Failed, unfinished and unreadable cells, and intervals that could not be computed.
fn problem_blocks(summary: &Summary) -> Vec<Block> {
    let mut blocks = vec![Block::Heading(2, "Failed and missing cells".into())];
    if summary.excluded.is_empty() {
        blocks.push(Block::Paragraph(text(format!("None: all {} cells are done.", summary.cells.len()))));
    } else {
        let rows = summary
            .excluded
            .iter()
            .map(|c| {
                vec![
                    vec![Span::Code(c.id.clone())],
                    text(c.label.clone()),
                    bold_if(c.state == "failed", c.state.clone()),
                    text(c.error.clone().unwrap_or_default()),
                ]
            })
            .collect();
        blocks.push(Block::Table { header: ["cell", "what", "state", "error"].map(String::from).to_vec(), rows });
    }
    if !summary.warnings.is_empty() {
        blocks.push(Block::Heading(3, "Intervals not computed".into()));
        blocks.push(Block::List(summary.warnings.iter().map(|w| text(w.clone())).collect()));
    }
    blocks
}

fn seconds_text(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// This machine's CPU model and core count (/proc/cpuinfo), for the provenance.
pub fn machine_description() -> String {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return "unknown (no /proc/cpuinfo)".into();
    };
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()));
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("{}, {cores} logical cores", model.unwrap_or_else(|| "unknown CPU".into()))
}

fn provenance_blocks(summary: &Summary, machine: &str) -> Vec<Block> {
    let p = &summary.provenance;
    let seeds: Vec<String> = p.train_seeds.iter().map(|s| s.to_string()).collect();
    let items = vec![
        text(format!("keel version: {}", p.keel_version)),
        vec![Span::Text("sweep hash: ".into()), Span::Code(p.sweep_hash.clone())],
        text(format!(
            "domain tasks: {}; general tasks: {}",
            p.eval.domain_tasks.join(", "),
            p.eval.general_tasks.join(", ")
        )),
        text(format!("eval limit: {} items per task (0: all), item seed {}", p.eval.limit, p.eval.seed)),
        text(format!("training seeds: {}", seeds.join(", "))),
        text(format!(
            "cells: {} done of {}; compute time {} (status.json, base included)",
            p.cells_done,
            p.cells_total,
            seconds_text(p.total_seconds)
        )),
        text(format!(
            "bootstrap: {} resamples, seed {}; {}",
            summary.bootstrap.resamples, summary.bootstrap.seed, summary.bootstrap.method
        )),
        text(format!("machine this report was made on: {machine}")),
    ];
    let mut phases: Vec<&String> =
        summary.cells.iter().flat_map(|c| c.seconds.keys()).chain(summary.base.seconds.keys()).collect();
    phases.sort();
    phases.dedup();
    let mut header: Vec<String> = vec!["model".into(), "state".into()];
    header.extend(phases.iter().map(|ph| format!("{ph} (s)")));
    header.extend(["total".into(), "started".into(), "finished".into()]);
    let time_row = |name: Inline,
                    state: &str,
                    seconds: &std::collections::BTreeMap<String, f64>,
                    started: &Option<String>,
                    finished: &Option<String>| {
        let mut row = vec![name, text(state)];
        row.extend(phases.iter().map(|ph| text(seconds.get(*ph).map_or("—".into(), |s| format!("{s:.1}")))));
        row.push(text(if seconds.is_empty() {
            "—".into()
        } else {
            seconds_text(seconds.values().fold(0.0, |a, s| a + s))
        }));
        row.push(text(started.clone().unwrap_or_default()));
        row.push(text(finished.clone().unwrap_or_default()));
        row
    };
    let mut rows =
        vec![time_row(text("base"), "done", &summary.base.seconds, &summary.base.started, &summary.base.finished)];
    for c in &summary.cells {
        let name =
            vec![Span::Code(c.id.clone()), Span::Text(format!(" {} lr={} seed={}", c.method, fmt_lr(c.lr), c.seed))];
        rows.push(time_row(name, &c.state, &c.seconds, &c.started, &c.finished));
    }
    vec![
        Block::Heading(2, "Provenance".into()),
        Block::List(items),
        Block::Heading(3, "Time per cell".into()),
        Block::Table { header, rows },
    ]
}

/// The report's figures, each a standalone SVG document.
struct Figures {
    pareto: String,
    /// None when no point has ΔL on both domain and general data.
    code_length: Option<String>,
    curves: String,
}

impl Figures {
    fn of(summary: &Summary) -> Self {
        Figures { pareto: pareto_svg(summary), code_length: code_length_svg(summary), curves: lr_curves_svg(summary) }
    }

    /// (file name, SVG) of each figure there is.
    fn files(&self) -> Vec<(&'static str, String)> {
        let mut files = vec![("pareto.svg", self.pareto.clone())];
        files.extend(self.code_length.clone().map(|svg| ("code_length.svg", svg)));
        files.push(("lr_curves.svg", self.curves.clone()));
        files
    }
}

/// The whole report as blocks, with `figures` in their places.
fn blocks(summary: &Summary, figures: &Figures, machine: &str) -> Vec<Block> {
    let p = &summary.provenance;
    let mut blocks = vec![
        Block::Heading(1, format!("keel sweep report {}", p.sweep_hash)),
        Block::Paragraph(text(format!(
            "{} points from {} of {} cells; domain score: mean of {}; general score: mean of {}; every delta is against the \
             base model on the same items.",
            summary.points.len(),
            p.cells_done,
            p.cells_total,
            p.eval.domain_tasks.join(", "),
            p.eval.general_tasks.join(", ")
        ))),
    ];
    blocks.extend(guideline_blocks(summary));
    blocks.push(Block::Heading(2, "Domain against general".into()));
    blocks.push(Block::Figure {
        file: "pareto.svg".into(),
        alt: "Pareto plot: domain against general score change".into(),
        svg: figures.pareto.clone(),
        caption:
            "Each point is the mean over seeds of one (method, LR, α, axes); bars are paired bootstrap 95% intervals \
                  (the seed range where samples are missing); the dashed line is the non-dominated frontier. In the \
                  table, a ΔL over several seeds is followed by the seeds' smallest and largest."
                .into(),
    });
    blocks.push(points_table(summary));
    if let Some(svg) = &figures.code_length {
        let (general, kept) = match &summary.provenance.general_data {
            Some(file) => (format!("the general responses written by people in {file}"), "them"),
            None => ("the base's own answers to general prompts".to_string(), "its own answers"),
        };
        blocks.push(Block::Heading(2, "Domain against general in code length".into()));
        blocks.push(Block::Figure {
            file: "code_length.svg".into(),
            alt: "Code-length change: domain against general ΔL".into(),
            svg: svg.clone(),
            caption: format!(
                "The same points by ΔL (keel analyze): x, the change in nats per token of the held-out domain \
                 references; y, that of {}. Lower left is better (shaded: learned the domain and kept {}); bars span \
                 the seeds; the dashed line is this plane's frontier. Where accuracies sit near chance, this plane \
                 shows what they cannot.",
                general, kept
            ),
        });
    }
    blocks.push(Block::Heading(2, "Per learning rate".into()));
    blocks.push(Block::Figure {
        file: "lr_curves.svg".into(),
        alt: "Score change against learning rate, per method".into(),
        svg: figures.curves.clone(),
        caption: "Lines are means over seeds; bands span the seeds' smallest to largest change.".into(),
    });
    blocks.extend(task_tables(summary));
    blocks.extend(delta_l_table(summary));
    blocks.extend(problem_blocks(summary));
    blocks.extend(provenance_blocks(summary, machine));
    blocks
}

/// The points table (the Pareto plot's numbers) as markdown: what STUDY.md quotes, and what its
/// test regenerates from the sweep directory.
pub fn points_markdown(summary: &Summary) -> String {
    markdown(&[points_table(summary)])
}

/// Every point trained at learning rate `lr`, in the summary's order: ΔL on domain and general
/// data (with the seeds' range) and the general score change with its interval, as markdown.
/// STUDY.md's comparison of every method at one LR, regenerated by its test.
pub fn points_at_lr_markdown(summary: &Summary, lr: f64) -> String {
    let header = ["point", "seeds", "ΔL domain", "ΔL general", "Δ general accuracy", "95% interval"];
    let rows = summary
        .points
        .iter()
        .filter(|p| p.lr == lr)
        .map(|p| {
            vec![
                text(p.label.clone()),
                text(p.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
                text(delta_l_over_seeds(p.delta_l_domain, p.delta_l_domain_seed_range, p.seeds.len())),
                text(delta_l_over_seeds(p.delta_l_general, p.delta_l_general_seed_range, p.seeds.len())),
                text(signed(p.general.delta)),
                text(interval(&p.general)),
            ]
        })
        .collect();
    markdown(&[Block::Table { header: header.map(String::from).to_vec(), rows }])
}

/// summary.json's bytes.
pub fn summary_json(summary: &Summary) -> Result<String> {
    Ok(serde_json::to_string_pretty(summary).context("cannot serialize the summary")? + "\n")
}

/// Write summary.json, report.md, report.html, pareto.svg, code_length.svg (where ΔL was
/// measured) and lr_curves.svg into `sweep_dir`; returns the paths written. Same summary and
/// machine, same bytes.
pub fn write_report(sweep_dir: &Path, summary: &Summary) -> Result<Vec<PathBuf>> {
    let figures = Figures::of(summary);
    let document = blocks(summary, &figures, &machine_description());
    let title = format!("keel sweep report {}", summary.provenance.sweep_hash);
    let mut files = vec![
        ("summary.json", summary_json(summary)?),
        ("report.md", markdown(&document)),
        ("report.html", html(&title, &document)),
    ];
    files.extend(figures.files());
    let mut written = Vec::new();
    for (name, content) in files {
        let path = sweep_dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    // A code-length figure from an earlier report would show ΔL this summary no longer has.
    let stale = sweep_dir.join("code_length.svg");
    if figures.code_length.is_none() && stale.exists() {
        std::fs::remove_file(&stale).with_context(|| format!("cannot remove the stale {}", stale.display()))?;
    }
    Ok(written)
}
