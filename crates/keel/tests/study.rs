//! The committed study (STUDY.md, study/) agrees with itself: every sweep directory's
//! summary.json and figures are what `keel report` makes of its files today, and every table and
//! figure STUDY.md and the README show is regenerated from those directories.
//!
//! STUDY.md marks each generated table:
//! `<!-- keel-report points study/gsm8k-cot -->`, the table, `<!-- end -->`.
//! The token table of finding 3 sits between `<!-- keel-analyze tokens study/tokens -->` and
//! `<!-- end -->`; keel's side of the paper's MedCalc table between
//! `<!-- keel-report beside-paper study/medcalc-cot -->` and `<!-- end -->`; finding 2's table of
//! every method at one LR between `<!-- keel-report at-lr study/gsm8k-cot 1e-3 -->` and
//! `<!-- end -->`; the general ΔL on written references (study/human-refs.sh) between
//! `<!-- keel-analyze human-refs study/human-refs -->` and `<!-- end -->`.
//! `KEEL_UPDATE_STUDY=1 cargo test -p keel --test study -- --test-threads=1` rewrites the marked
//! tables (and only them) from the directories; without it, any difference fails.

use keel_report::{
    code_length_svg, lr_curves_svg, pareto_svg, points_at_lr_markdown, points_markdown, summarize, summary_json,
    Summary,
};
use keel_testkit::repo_root;
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- keel-report points ";
const BESIDE_PAPER: &str = "<!-- keel-report beside-paper ";
const AT_LR: &str = "<!-- keel-report at-lr ";
const END: &str = "<!-- end -->";

/// The sweep directories of the study: study/<name>/ with a sweep.json.
fn sweep_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("study"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("sweep.json").exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_sweep_directory_reports_to_its_committed_summary_and_figures() {
    for dir in sweep_dirs() {
        if !dir.join("summary.json").exists() {
            continue; // started, never reported: nothing committed to check
        }
        let summary = summarize(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        let name = dir.display();
        assert_eq!(summary_json(&summary).unwrap(), read(&dir.join("summary.json")), "{name}/summary.json is stale");
        assert_eq!(pareto_svg(&summary), read(&dir.join("pareto.svg")), "{name}/pareto.svg is stale");
        assert_eq!(lr_curves_svg(&summary), read(&dir.join("lr_curves.svg")), "{name}/lr_curves.svg is stale");
        match code_length_svg(&summary) {
            Some(svg) => assert_eq!(svg, read(&dir.join("code_length.svg")), "{name}/code_length.svg is stale"),
            None => assert!(!dir.join("code_length.svg").exists(), "{name}/code_length.svg has no ΔL left to draw"),
        }
    }
}

/// (start of the table, end of the table, sweep directory) of each block marked by `begin`.
fn marked_tables(text: &str, begin: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(begin).map(|i| i + from) {
        let line_end = text[i..].find('\n').map(|j| i + j + 1).expect("a marker line ends");
        let dir = text[i + begin.len()..line_end].trim().trim_end_matches("-->").trim().to_string();
        let end = text[line_end..].find(END).map(|j| line_end + j).expect("every marked table has <!-- end -->");
        out.push((line_end, end, dir));
        from = end;
    }
    out
}

/// keel's side of the paper's MedCalc table: per method (SFT, TALR) and LR, the domain score and
/// the general score (absolute, as the paper gives them) with ΔL on general data, seed 0.
fn beside_paper_markdown(summary: &Summary) -> String {
    let mut lrs: Vec<f64> = summary.points.iter().map(|p| p.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let header: Vec<String> = lrs.iter().map(|lr| format!("LR {lr:e}")).collect();
    let mut rows = vec![
        format!("| method | {} |", header.join(" | ")),
        format!("|---|{}", "---|".repeat(lrs.len())),
        format!(
            "| base model | {:.3} / {:.3} (all LRs) |{}",
            summary.base.domain_score,
            summary.base.general_score,
            " |".repeat(lrs.len() - 1)
        ),
    ];
    for (method, name) in [("sft", "standard SFT"), ("talr", "TALR")] {
        let cells: Vec<String> = lrs
            .iter()
            .map(|&lr| {
                let p = summary.points.iter().find(|p| p.method == method && p.lr == lr && p.seeds == [0]);
                p.map_or("—".to_string(), |p| {
                    let dl = p.delta_l_general.unwrap();
                    format!("{:.3} / {:.3} (ΔL {dl:+.3})", p.domain.score, p.general.score)
                })
            })
            .collect();
        rows.push(format!("| {name} | {} |", cells.join(" | ")));
    }
    rows.join("\n")
}

/// The table a marker asks for: `dir` is the sweep directory, then the LR for `at-lr`.
fn generated_table(kind: &str, dir: &str) -> String {
    let (dir, lr) = dir.split_once(' ').map_or((dir, None), |(d, lr)| (d, Some(lr)));
    let summary = summarize(&repo_root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e:#}"));
    match kind {
        BESIDE_PAPER => beside_paper_markdown(&summary),
        AT_LR => points_at_lr_markdown(&summary, lr.and_then(|l| l.parse().ok()).expect("at-lr names a learning rate")),
        _ => points_markdown(&summary),
    }
}

#[test]
fn study_md_tables_are_regenerated_from_the_sweep_directories() {
    let path = repo_root().join("STUDY.md");
    let text = read(&path);
    let mut blocks: Vec<_> = Vec::new();
    for kind in [BEGIN, BESIDE_PAPER, AT_LR] {
        blocks.extend(marked_tables(&text, kind).into_iter().map(|b| (b, kind)));
    }
    blocks.sort_by_key(|((start, _, _), _)| *start);
    assert!(!blocks.is_empty(), "STUDY.md marks no table");
    let mut updated = text.clone();
    for ((start, end, dir), kind) in blocks.iter().rev() {
        let table = generated_table(kind, dir);
        let want = format!("\n{}\n", table.trim());
        if std::env::var_os("KEEL_UPDATE_STUDY").is_some() {
            updated.replace_range(*start..*end, &want);
        } else {
            assert_eq!(text[*start..*end], want, "STUDY.md's table of {dir} differs from its sweep directory");
        }
    }
    if updated != text {
        std::fs::write(&path, updated).unwrap();
    }
}

const TOKENS: &str = "<!-- keel-analyze tokens study/tokens -->";

/// Finding 3's token table from `keel analyze`'s reports in study/tokens/ (study/tokens.sh): per
/// domain and target, how many target tokens the base model finds hard (probability < 0.1, the
/// first of the histogram's ten bins).
fn tokens_markdown(dir: &Path) -> String {
    let mut rows = vec![
        "| targets | examples | target tokens | per example | mean NLL | p < 0.1 | hard tokens per example |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for name in ["gsm8k-cot", "gsm8k-label", "medcalc-cot", "medcalc-label"] {
        let file = dir.join(format!("{name}.json"));
        let a: serde_json::Value = serde_json::from_str(&read(&file)).unwrap();
        let examples = a["examples"].as_f64().unwrap();
        let m = &a["domain"]["model"];
        let tokens = m["tokens"].as_f64().unwrap();
        let hard = m["histogram"][0].as_f64().unwrap();
        rows.push(format!(
            "| {name} | {examples} | {tokens} | {:.1} | {:.3} | {:.1}% | {:.1} |",
            tokens / examples,
            m["mean_nll"].as_f64().unwrap(),
            100.0 * hard / tokens,
            hard / examples
        ));
    }
    format!("\n{}\n", rows.join("\n"))
}

/// Checks (or, with KEEL_UPDATE_STUDY, rewrites) the one table of STUDY.md after `marker`.
fn check_single_table(marker: &str, want: &str, source: &str) {
    let path = repo_root().join("STUDY.md");
    let text = read(&path);
    let Some(i) = text.find(marker) else { panic!("STUDY.md has no {marker} table") };
    let start = i + marker.len();
    let end = start + text[start..].find(END).expect("the table has <!-- end -->");
    if std::env::var_os("KEEL_UPDATE_STUDY").is_some() {
        let mut updated = text.clone();
        updated.replace_range(start..end, want);
        std::fs::write(&path, updated).unwrap();
    } else {
        assert_eq!(text[start..end], *want, "STUDY.md's table after {marker} differs from {source}");
    }
}

#[test]
fn study_md_token_table_is_regenerated_from_the_analyses() {
    check_single_table(TOKENS, &tokens_markdown(&repo_root().join("study/tokens")), "study/tokens/*.json");
}

const HUMAN_REFS: &str = "<!-- keel-analyze human-refs study/human-refs -->";

/// Mean and, over several seeds, the range, in the report's ΔL format.
fn over_seeds(values: &[f64]) -> String {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    keel_report::delta_l_over_seeds(Some(mean), Some([lo, hi]), values.len())
}

/// The general ΔL on written references beside the sweep's ΔLs, one row per point of
/// study/gsm8k-cot's summary (its label and order; the seeds measured pooled), from
/// study/human-refs/*.json.
fn human_refs_markdown(dir: &Path) -> String {
    let summary: serde_json::Value =
        serde_json::from_str(&read(&repo_root().join("study/gsm8k-cot/summary.json"))).unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&read(&p)).unwrap())
        .collect();
    // (label, seeds measured, their records)
    let mut points: Vec<(String, Vec<String>, Vec<serde_json::Value>)> = Vec::new();
    for point in summary["points"].as_array().unwrap() {
        let cells = point["cells"].as_array().unwrap();
        let (mut seeds, mut measured) = (Vec::new(), Vec::new());
        for (cell, seed) in cells.iter().zip(point["seeds"].as_array().unwrap()) {
            if let Some(r) = records.iter().find(|r| r["cell"] == *cell) {
                seeds.push(seed.to_string());
                measured.push(r.clone());
            }
        }
        if !measured.is_empty() {
            points.push((point["label"].as_str().unwrap().to_string(), seeds, measured));
        }
    }
    let pooled: usize = points.iter().map(|(_, _, r)| r.len()).sum();
    assert_eq!(pooled, records.len(), "every measured cell is a cell of study/gsm8k-cot");
    let mut rows = vec![
        "| point | seeds | ΔL domain | ΔL general, base's own answers | ΔL general, written code |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for (point, seeds, records) in &points {
        let column =
            |pick: &dyn Fn(&serde_json::Value) -> f64| over_seeds(&records.iter().map(pick).collect::<Vec<_>>());
        rows.push(format!(
            "| {point} | {} | {} | {} | {} |",
            seeds.join(", "),
            column(&|r| r["in_the_sweep"]["domain"]["delta_l"].as_f64().unwrap()),
            column(&|r| r["in_the_sweep"]["general"]["delta_l"].as_f64().unwrap()),
            column(&|r| r["human_general"]["delta_l"].as_f64().unwrap()),
        ));
    }
    format!("\n{}\n", rows.join("\n"))
}

#[test]
fn study_md_written_reference_table_is_regenerated_and_each_model_was_trained_again_exactly() {
    let dir = repo_root().join("study/human-refs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue; // a point being written
        }
        let r: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
        // The model trained again from the cell's config measures the cell's domain ΔL again: to
        // 1e-5 nats, or 0.1% where the cell trained on another host's matrix kernels at a large LR.
        let (again, sweep) =
            (r["domain_again"]["delta_l"].as_f64().unwrap(), r["in_the_sweep"]["domain"]["delta_l"].as_f64().unwrap());
        assert!(
            (again - sweep).abs() < 1e-5_f64.max(1e-3 * sweep.abs()),
            "{}: domain ΔL {again} against the sweep's {sweep}",
            path.display()
        );
        assert_eq!(r["human_general"]["examples"], 164, "{}: every HumanEval solution", path.display());
    }
    check_single_table(HUMAN_REFS, &human_refs_markdown(&dir), "study/human-refs/*.json");
}

#[test]
fn every_figure_study_md_and_the_readme_show_exists_in_a_reported_sweep() {
    for doc in ["STUDY.md", "README.md"] {
        let text = read(&repo_root().join(doc));
        for (i, _) in text.match_indices("](study/") {
            let link = &text[i + 2..i + 2 + text[i + 2..].find(')').unwrap()];
            let file = repo_root().join(link);
            assert!(file.exists(), "{doc} shows {link}, which does not exist");
            if link.ends_with(".svg") {
                let dir = file.parent().unwrap();
                assert!(dir.join("summary.json").exists(), "{doc} shows {link} from a sweep never reported");
            }
        }
    }
}

#[test]
fn the_marker_parser_finds_each_table_and_its_directory() {
    let text = "a\n<!-- keel-report points study/x -->\n| t |\n<!-- end -->\nb\n<!-- keel-report points study/y -->\n\n<!-- end -->\n";
    let found = marked_tables(text, BEGIN);
    assert_eq!(found.iter().map(|b| b.2.as_str()).collect::<Vec<_>>(), ["study/x", "study/y"]);
    assert_eq!(&text[found[0].0..found[0].1], "| t |\n");
}
