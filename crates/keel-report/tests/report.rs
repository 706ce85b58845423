//! `keel report` on a synthetic sweep directory written by hand as docs/sweep-layout.md says:
//! a base, 2 methods × 2 LRs × 2 seeds, a WiSE-FT merge of two seeds, a failed cell and a pending
//! one. The numbers are recomputed here from the cells' files, independently of the crate.

use keel_report::{summarize, write_report, Summary};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const DOMAIN: [&str; 1] = ["gsm8k"];
const GENERAL: [&str; 2] = ["arc_easy", "ifeval"];

/// Items per task, and each task's primary metric.
fn task_shape(task: &str) -> (usize, &'static str) {
    match task {
        "gsm8k" => (40, "flexible_match"),
        "arc_easy" => (36, "acc"),
        _ => (30, "inst_level_strict"),
    }
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keel-report-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deterministic number in [0, 1) from a key (SplitMix64 finalizer of FNV-1a).
fn unit(key: &str) -> f64 {
    let mut z = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Per item (passed, count): an item's difficulty is shared by every model (so models are
/// paired), plus noise of the model's own; a model with skill p passes about p of them.
fn verdicts(task: &str, model: &str, skill: f64) -> Vec<(u32, u32)> {
    let (n, metric) = task_shape(task);
    (0..n)
        .map(|i| {
            let count = if metric == "inst_level_strict" { 1 + (i % 3) as u32 } else { 1 };
            let passed = (0..count)
                .filter(|k| {
                    0.8 * unit(&format!("{task}/{i}/{k}")) + 0.2 * unit(&format!("{model}/{task}/{i}/{k}")) < skill
                })
                .count() as u32;
            (passed, count)
        })
        .collect()
}

/// Write eval/results.json and samples for a model with the given skill per task.
fn write_eval(dir: &Path, model: &str, skills: [f64; 3]) {
    let eval = dir.join("eval");
    std::fs::create_dir_all(&eval).unwrap();
    let mut tasks = serde_json::Map::new();
    for (task, skill) in DOMAIN.iter().chain(&GENERAL).zip(skills) {
        let (_, metric) = task_shape(task);
        let v = verdicts(task, model, skill);
        let (passed, count) = v.iter().fold((0, 0), |(p, c), &(x, n)| (p + x, c + n));
        let lines: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, &(p, c))| match metric {
                // As keel eval writes multiple-choice samples: the prediction and the gold answer.
                "acc" => json!({"source": format!("{task}-{i}"), "gold": 1, "pred_acc": if p == 1 { 1 } else { 2 }})
                    .to_string(),
                "inst_level_strict" => {
                    json!({"source": format!("{task}-{i}"), metric: [p, c], "prompt_level_strict": p == c}).to_string()
                }
                _ => json!({"source": format!("{task}-{i}"), metric: p == 1, "strict_match": false}).to_string(),
            })
            .collect();
        std::fs::write(eval.join(format!("{task}.samples.jsonl")), lines.join("\n") + "\n").unwrap();
        tasks.insert(
            task.to_string(),
            json!({"n": v.len(), "primary_metric": metric, metric: passed as f64 / count as f64,
            format!("{metric}_ci95"): [0.0, 1.0], "seconds": 1.5}),
        );
    }
    let results = json!({"model": model, "limit": 40, "seed": 0, "keel_version": "0.1.0", "tasks": tasks});
    std::fs::write(eval.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn done_status(seconds: f64) -> Value {
    json!({"state": "done", "error": null, "started": "2026-12-02T20:00:00Z", "finished": "2026-12-02T20:10:00Z",
        "seconds": {"train": seconds, "eval": 30.0, "analyze": 4.0}})
}

/// Skills (gsm8k, arc_easy, ifeval) of each trained (method, lr); the base is (0.3, 0.6, 0.7).
fn skills(method: &str, lr: f64, seed: u64) -> [f64; 3] {
    let wobble = 0.01 * seed as f64;
    match (method, lr < 5e-6) {
        ("sft", true) => [0.45 + wobble, 0.59, 0.69 - wobble],
        ("sft", false) => [0.58, 0.45 + wobble, 0.55],
        ("talr", true) => [0.42, 0.60 - wobble, 0.70],
        _ => [0.56 - wobble, 0.53, 0.63],
    }
}

struct CellDef {
    id: String,
    cell: Value,
}

/// The synthetic sweep: cells in index order, with their files.
fn build_sweep() -> PathBuf {
    let dir = temp_dir("sweep");
    write_json(&dir.join("base/status.json"), &done_status(0.0));
    write_eval(&dir.join("base"), "base", [0.3, 0.6, 0.7]);
    write_json(
        &dir.join("base/analyze.json"),
        &json!({"domain": {"code_length": 0.9, "delta_l": 0.0}, "general": {"code_length": 1.3, "delta_l": 0.0}}),
    );
    let mut cells: Vec<CellDef> = Vec::new();
    let mut add = |method: &str, kind: &str, lr: f64, seed: u64, alpha: Option<f64>, from: Option<String>| {
        let index = cells.len();
        let id = format!("{:016x}", 0xc0ffee00u64 + index as u64);
        let cell = json!({"id": id, "index": index, "method": method, "kind": kind, "lr": lr, "seed": seed,
            "axes": {"train.lr": lr, "train.seed": seed}, "overrides": {}, "from": from, "alpha": alpha});
        cells.push(CellDef { id: id.clone(), cell });
        id
    };
    let mut sft_high = Vec::new();
    for method in ["sft", "talr"] {
        for lr in [1e-6, 1e-5] {
            for seed in [0, 1] {
                let id = add(method, "train", lr, seed, None, None);
                if method == "sft" && lr == 1e-5 {
                    sft_high.push(id);
                }
            }
        }
    }
    let merges: Vec<String> = sft_high
        .iter()
        .enumerate()
        .map(|(seed, from)| add("wise_ft", "merge", 1e-5, seed as u64, Some(0.5), Some(from.clone())))
        .collect();
    let failed = add("sft", "train", 2e-5, 0, None, None);
    let pending = add("talr", "train", 2e-5, 0, None, None);
    for (i, def) in cells.iter().enumerate() {
        let cell_dir = dir.join("cells").join(&def.id);
        write_json(&cell_dir.join("cell.json"), &def.cell);
        if def.id == pending {
            continue;
        }
        if def.id == failed {
            write_json(
                &cell_dir.join("status.json"),
                &json!({"state": "failed", "error": "cannot read /no/such/data.jsonl (data.path)",
                "started": "2026-12-02T20:00:00Z", "finished": "2026-12-02T20:00:03Z", "seconds": {"train": 3.0}}),
            );
            continue;
        }
        let (method, lr, seed) = (
            def.cell["method"].as_str().unwrap(),
            def.cell["lr"].as_f64().unwrap(),
            def.cell["seed"].as_u64().unwrap(),
        );
        let skill = if merges.contains(&def.id) { [0.47, 0.56, 0.67] } else { skills(method, lr, seed) };
        write_eval(&cell_dir, &def.id, skill);
        write_json(&cell_dir.join("status.json"), &done_status(100.0 + i as f64));
        let delta_l = -0.02 * (skill[0] - 0.3) * 10.0;
        write_json(
            &cell_dir.join("analyze.json"),
            &json!({"domain": {"code_length": 0.9 + delta_l, "delta_l": delta_l},
            "general": {"code_length": 1.3 + (0.6 - skill[1]), "delta_l": 0.6 - skill[1]}}),
        );
    }
    let sweep = json!({"sweep_hash": "0123456789abcdef", "keel_version": "0.1.0",
        "eval": {"domain_tasks": DOMAIN, "general_tasks": GENERAL, "limit": 40, "seed": 0},
        "cells": cells.iter().map(|c| c.cell.clone()).collect::<Vec<_>>()});
    write_json(&dir.join("sweep.json"), &sweep);
    dir
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A task's primary score in a results.json, read independently of the crate.
fn primary(results: &Value, task: &str) -> f64 {
    let entry = &results["tasks"][task];
    entry[entry["primary_metric"].as_str().unwrap()].as_f64().unwrap()
}

fn suite(results: &Value, tasks: &[&str]) -> f64 {
    tasks.iter().map(|t| primary(results, t)).sum::<f64>() / tasks.len() as f64
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn summary_numbers_recompute_from_the_cells_results() {
    let dir = build_sweep();
    let summary = summarize(&dir).unwrap();
    let base = read(&dir.join("base/eval/results.json"));
    assert!(close(summary.base.domain_score, suite(&base, &DOMAIN)));
    assert!(close(summary.base.general_score, suite(&base, &GENERAL)));
    assert_eq!(summary.points.len(), 5, "sft and talr at 2 LRs, and one merge point");
    for p in &summary.points {
        let results: Vec<Value> =
            p.cells.iter().map(|id| read(&dir.join("cells").join(id).join("eval/results.json"))).collect();
        let mean = |f: &dyn Fn(&Value) -> f64| results.iter().map(f).sum::<f64>() / results.len() as f64;
        let domain = mean(&|r| suite(r, &DOMAIN));
        let general = mean(&|r| suite(r, &GENERAL));
        assert!(close(p.domain.score, domain) && close(p.domain.delta, domain - suite(&base, &DOMAIN)), "{}", p.label);
        assert!(
            close(p.general.score, general) && close(p.general.delta, general - suite(&base, &GENERAL)),
            "{}",
            p.label
        );
        for task in DOMAIN.iter().chain(&GENERAL) {
            let t = &p.tasks[*task];
            let score = mean(&|r| primary(r, task));
            assert!(
                close(t.score.score, score) && close(t.score.delta, score - primary(&base, task)),
                "{} {task}",
                p.label
            );
            assert_eq!(t.n, task_shape(task).0 as u64);
        }
        let analyses: Vec<Value> =
            p.cells.iter().map(|id| read(&dir.join("cells").join(id).join("analyze.json"))).collect();
        let delta_l =
            analyses.iter().map(|a| a["general"]["delta_l"].as_f64().unwrap()).sum::<f64>() / analyses.len() as f64;
        assert!(close(p.delta_l_general.unwrap(), delta_l));
        let each: Vec<f64> = analyses.iter().map(|a| a["general"]["delta_l"].as_f64().unwrap()).collect();
        let [lo, hi] = p.delta_l_general_seed_range.unwrap();
        assert!(
            close(lo, each.iter().copied().fold(f64::INFINITY, f64::min))
                && close(hi, each.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        );
        let table = keel_report::points_markdown(&summary);
        let row = table.lines().find(|l| l.starts_with(&format!("| {} |", p.label))).unwrap();
        assert!(row.contains(&format!("({lo:+.3} to {hi:+.3})")), "the table shows the seeds' ΔL range: {row}");
        assert_eq!(p.seeds, vec![0, 1]);
    }
}

#[test]
fn merge_cells_are_points_labelled_with_alpha() {
    let summary = summarize(&build_sweep()).unwrap();
    let merge = summary.points.iter().find(|p| p.kind == "merge").unwrap();
    assert_eq!(merge.label, "wise_ft α=0.5 lr=1e-5");
    assert_eq!(merge.alpha, Some(0.5));
    let labels: Vec<&str> = summary.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["sft lr=1e-6", "sft lr=1e-5", "talr lr=1e-6", "talr lr=1e-5", "wise_ft α=0.5 lr=1e-5"]);
}

#[test]
fn frontier_flags_match_a_brute_force_check() {
    let summary = summarize(&build_sweep()).unwrap();
    let coordinates: Vec<(f64, f64)> =
        summary.points.iter().map(|p| (p.domain.delta, p.general.delta)).chain([(0.0, 0.0)]).collect();
    let dominated = |a: (f64, f64)| coordinates.iter().any(|&b| b.0 >= a.0 && b.1 >= a.1 && (b.0 > a.0 || b.1 > a.1));
    for p in &summary.points {
        assert_eq!(p.pareto, !dominated((p.domain.delta, p.general.delta)), "{}", p.label);
    }
    assert_eq!(summary.base_on_frontier, !dominated((0.0, 0.0)));
    assert!(summary.points.iter().any(|p| p.pareto));
}

fn all_scores(summary: &Summary) -> Vec<keel_report::Score> {
    summary
        .points
        .iter()
        .flat_map(|p| [p.domain, p.general].into_iter().chain(p.tasks.values().map(|t| t.score)))
        .collect()
}

#[test]
fn bootstrap_intervals_are_deterministic_and_contain_the_estimate() {
    let dir = build_sweep();
    let (a, b) = (all_scores(&summarize(&dir).unwrap()), all_scores(&summarize(&dir).unwrap()));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let ([lo, hi], other) = (x.ci95.expect("every task has paired samples"), y.ci95.unwrap());
        assert_eq!([lo, hi], other);
        assert!(lo <= x.delta && x.delta <= hi, "{lo} <= {} <= {hi}", x.delta);
        assert!(lo < hi, "items and seeds vary, so the interval has width");
    }
}

#[test]
fn failed_and_pending_cells_are_listed() {
    let dir = build_sweep();
    let summary = summarize(&dir).unwrap();
    let states: Vec<(&str, &str)> = summary.excluded.iter().map(|c| (c.label.as_str(), c.state.as_str())).collect();
    assert_eq!(states, [("sft lr=2e-5 seed=0", "failed"), ("talr lr=2e-5 seed=0", "pending")]);
    assert_eq!(summary.excluded[0].error.as_deref(), Some("cannot read /no/such/data.jsonl (data.path)"));
    assert_eq!((summary.provenance.cells_total, summary.provenance.cells_done), (12, 10));
    write_report(&dir, &summary).unwrap();
    for file in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains("cannot read /no/such/data.jsonl (data.path)"), "{file} lists the failure");
        assert!(text.contains("pending"), "{file} lists the pending cell");
    }
}

#[test]
fn the_report_is_deterministic_and_summary_json_depends_only_on_the_files() {
    let dir = build_sweep();
    let names = ["summary.json", "report.md", "report.html", "pareto.svg", "code_length.svg", "lr_curves.svg"];
    let written = write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    assert_eq!(written, names.map(|n| dir.join(n)).to_vec());
    let first: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(dir.join(n)).unwrap()).collect();
    write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    for (name, bytes) in names.iter().zip(&first) {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name} changed between runs");
    }
    // The same files at another path give the same summary.json.
    let elsewhere = build_sweep();
    write_report(&elsewhere, &summarize(&elsewhere).unwrap()).unwrap();
    assert_eq!(std::fs::read(elsewhere.join("summary.json")).unwrap(), first[0]);
}

#[test]
fn the_html_is_self_contained_with_its_figures() {
    let dir = build_sweep();
    write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    for forbidden in ["http", "src=", "<script", "<link", "url("] {
        assert!(!html.contains(forbidden), "report.html contains {forbidden}");
    }
    for svg in ["pareto.svg", "code_length.svg", "lr_curves.svg"] {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg} is a standalone SVG");
        assert!(text.contains("base") && text.contains("sft") && text.contains("1e-5"), "{svg} has labels");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for figure in ["(pareto.svg)", "(code_length.svg)", "(lr_curves.svg)"] {
        assert!(md.contains(figure), "report.md links {figure}");
    }
    assert!(
        md.contains(keel_report::RULE.split_whitespace().take(6).collect::<Vec<_>>().join(" ").as_str()),
        "the rule is stated"
    );
}

#[test]
fn the_guideline_recommends_an_eligible_point() {
    let summary = summarize(&build_sweep()).unwrap();
    let g = &summary.guideline;
    let recommended = g.recommended.as_deref().unwrap();
    assert!(g.eligible.iter().any(|l| l == recommended));
    let threshold = g.threshold.unwrap();
    let best = summary.points.iter().map(|p| p.domain.delta).fold(f64::NEG_INFINITY, f64::max);
    assert!(close(threshold, 0.95 * best));
    let eligible: Vec<_> = summary.points.iter().filter(|p| p.domain.delta >= threshold).collect();
    let best_general = eligible.iter().map(|p| p.general.delta).fold(f64::NEG_INFINITY, f64::max);
    let chosen = summary.points.iter().find(|p| p.label == recommended).unwrap();
    assert_eq!(chosen.general.delta, best_general);
    let small = g.small_lr_sft.as_ref().unwrap();
    assert_eq!(small.label, "sft lr=1e-6");
    assert_eq!(small.reaches_threshold, small.domain_delta >= threshold);
}

#[test]
fn the_code_length_guideline_picks_the_smallest_general_delta_l_within_95_percent_and_is_in_the_report() {
    let dir = build_sweep();
    let summary = summarize(&dir).unwrap();
    let c = summary.guideline.code_length.as_ref().expect("every cell has analyze.json");
    let dl = |p: &keel_report::Point| (p.delta_l_domain.unwrap(), p.delta_l_general.unwrap());
    let best = summary.points.iter().map(|p| dl(p).0).fold(f64::INFINITY, f64::min);
    assert!(best < 0.0 && close(c.threshold.unwrap(), 0.95 * best));
    let eligible: Vec<_> = summary.points.iter().filter(|p| dl(p).0 <= 0.95 * best).collect();
    assert_eq!(c.eligible, eligible.iter().map(|p| p.label.clone()).collect::<Vec<_>>());
    let least_general = eligible.iter().map(|p| dl(p).1).fold(f64::INFINITY, f64::min);
    let chosen = summary.points.iter().find(|p| Some(&p.label) == c.recommended.as_ref()).unwrap();
    assert_eq!(dl(chosen).1, least_general);
    write_report(&dir, &summary).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("### By code length") && md.contains(&c.text[0]), "{md}");
}

#[test]
fn a_cell_missing_a_task_is_listed_with_the_file_and_key() {
    let dir = build_sweep();
    let summary = summarize(&dir).unwrap();
    let victim = &summary.points[0].cells[0];
    let path = dir.join("cells").join(victim).join("eval/results.json");
    let mut results = read(&path);
    results["tasks"].as_object_mut().unwrap().remove("ifeval");
    write_json(&path, &results);
    let summary = summarize(&dir).unwrap();
    let listed = summary.excluded.iter().find(|c| &c.id == victim).expect("the broken cell is listed");
    assert_eq!(listed.state, "unreadable");
    let error = listed.error.as_deref().unwrap();
    assert!(error.contains(&path.display().to_string()) && error.contains("tasks.ifeval"), "{error}");
    assert_eq!(summary.points[0].seeds, vec![1], "the point keeps its other seed");
}

#[test]
fn bad_sweep_directories_are_errors_naming_the_file() {
    let dir = build_sweep();
    std::fs::write(dir.join("base/status.json"), r#"{"state": "training"}"#).unwrap();
    let error = format!("{:#}", summarize(&dir).unwrap_err());
    assert!(error.contains("base/status.json") && error.contains("training"), "{error}");
    std::fs::write(dir.join("sweep.json"), r#"{"sweep_hash": "x", "keel_version": "0.1.0", "cells": []}"#).unwrap();
    let error = format!("{:#}", summarize(&dir).unwrap_err());
    assert!(error.contains("sweep.json") && error.contains("eval"), "{error}");
    let empty = temp_dir("empty");
    let error = format!("{:#}", summarize(&empty).unwrap_err());
    assert!(error.contains("sweep.json"), "{error}");
}

#[test]
fn samples_on_other_items_give_no_interval_and_a_warning() {
    let dir = build_sweep();
    let summary = summarize(&dir).unwrap();
    let victim = &summary.points[2].cells[1];
    let path = dir.join("cells").join(victim).join("eval/gsm8k.samples.jsonl");
    let text = std::fs::read_to_string(&path).unwrap().replacen("gsm8k-0", "gsm8k-999", 1);
    std::fs::write(&path, text).unwrap();
    let summary = summarize(&dir).unwrap();
    assert!(summary.points[2].domain.ci95.is_none());
    assert!(summary.points[2].general.ci95.is_some());
    assert!(
        summary.warnings.iter().any(|w| w.contains("gsm8k-999") && w.contains("not paired")),
        "{:?}",
        summary.warnings
    );
}

#[test]
fn a_sweep_with_no_finished_cell_still_reports() {
    let dir = build_sweep();
    for entry in std::fs::read_dir(dir.join("cells")).unwrap() {
        let _ = std::fs::remove_file(entry.unwrap().path().join("status.json"));
    }
    let summary = summarize(&dir).unwrap();
    assert!(summary.points.is_empty());
    assert_eq!(summary.excluded.len(), 12);
    assert!(summary.excluded.iter().all(|c| c.state == "pending"));
    assert!(summary.guideline.text[0].contains("No cell finished"));
    write_report(&dir, &summary).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("report.html")).unwrap().matches("<svg").count(), 2);
}

#[test]
fn summary_json_leaves_out_times_so_a_resumed_sweep_matches() {
    let dir = build_sweep();
    write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let md_before = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let summary = summarize(&dir).unwrap();
    // As a resumed run would leave it: other times, same results.
    let status = dir.join("cells").join(&summary.points[0].cells[0]).join("status.json");
    write_json(
        &status,
        &json!({"state": "done", "error": null, "started": "2026-12-03T08:00:00Z",
        "finished": "2026-12-03T09:00:00Z", "seconds": {"train": 999.0, "eval": 1.0}}),
    );
    write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), before);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md != md_before && md.contains("2026-12-03T09:00:00Z"), "the report's time table shows the times");
}

#[test]
fn other_axes_split_points_and_name_their_series() {
    let dir = build_sweep();
    let path = dir.join("sweep.json");
    let mut sweep = read(&path);
    for cell in sweep["cells"].as_array_mut().unwrap() {
        let target = if cell["seed"] == 0 { "cot" } else { "label" };
        cell["axes"]["data.target"] = json!(target);
    }
    write_json(&path, &sweep);
    let summary = summarize(&dir).unwrap();
    assert_eq!(summary.points.len(), 10, "each (method, LR) splits by target");
    assert!(summary.points.iter().all(|p| p.seeds.len() == 1));
    let first: Vec<&str> = summary.points.iter().take(2).map(|p| p.label.as_str()).collect();
    assert_eq!(first, ["sft data.target=cot lr=1e-6", "sft data.target=label lr=1e-6"]);
    assert_eq!(summary.points[0].series, "sft data.target=cot");
    assert_eq!(summary.points[0].axes["data.target"], json!("cot"));
}

/// The (cx, cy) of every `<circle … r="R"` in an SVG, in document order.
fn circles(svg: &str, r: &str) -> Vec<(f64, f64)> {
    let attr = |tag: &str, name: &str| -> f64 {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[start..].split('"').next().unwrap().parse().unwrap()
    };
    svg.split("<circle ")
        .skip(1)
        .filter(|t| t.contains(&format!(" r=\"{r}\"")))
        .map(|t| (attr(t, "cx"), attr(t, "cy")))
        .collect()
}

#[test]
fn the_code_length_figure_places_points_by_their_delta_l_and_rings_its_frontier() {
    let summary = summarize(&build_sweep()).unwrap();
    let svg = keel_report::code_length_svg(&summary).expect("every cell has analyze.json");
    // Trained points are 6 px circles (merges are diamonds), in the summary's order.
    let trained: Vec<&keel_report::Point> = summary.points.iter().filter(|p| p.kind == "train").collect();
    let centers = circles(&svg, "6");
    assert_eq!(centers.len(), trained.len());
    for (a, ca) in trained.iter().zip(&centers) {
        for (b, cb) in trained.iter().zip(&centers) {
            let (da, db) = (a.delta_l_domain.unwrap(), b.delta_l_domain.unwrap());
            let (ga, gb) = (a.delta_l_general.unwrap(), b.delta_l_general.unwrap());
            // x grows with ΔL domain; y (pixels, downward) shrinks as ΔL general grows.
            assert_eq!(da < db, ca.0 < cb.0, "{} and {} on x", a.label, b.label);
            assert_eq!(ga < gb, ca.1 > cb.1, "{} and {} on y", a.label, b.label);
        }
    }
    // Frontier rings (9.5 px) go around exactly the points no other point (nor the base) beats
    // on both ΔL, lower being better.
    let lengths: Vec<(f64, f64)> =
        summary.points.iter().map(|p| (p.delta_l_domain.unwrap(), p.delta_l_general.unwrap())).collect();
    let beaten =
        |&(d, g): &(f64, f64)| lengths.iter().chain([&(0.0, 0.0)]).any(|&(e, h)| e <= d && h <= g && (e < d || h < g));
    let on_frontier = lengths.iter().filter(|p| !beaten(p)).count();
    let ring_style = "fill=\"none\" stroke=\"#111\" stroke-width=\"2\"/>";
    let diamond_rings =
        svg.split("<polygon ").filter(|t| t.split('>').next().unwrap().contains(&ring_style[..40])).count();
    assert_eq!(circles(&svg, "9.5").len() + diamond_rings, on_frontier);
}

#[test]
fn without_delta_l_there_is_no_code_length_figure() {
    let dir = build_sweep();
    write_report(&dir, &summarize(&dir).unwrap()).unwrap();
    assert!(dir.join("code_length.svg").exists());
    for entry in std::fs::read_dir(dir.join("cells")).unwrap() {
        let _ = std::fs::remove_file(entry.unwrap().path().join("analyze.json"));
    }
    let _ = std::fs::remove_file(dir.join("base/analyze.json"));
    let summary = summarize(&dir).unwrap();
    assert!(keel_report::code_length_svg(&summary).is_none());
    let written = write_report(&dir, &summary).unwrap();
    assert!(!written.iter().any(|p| p.ends_with("code_length.svg")));
    assert!(!dir.join("code_length.svg").exists(), "the earlier report's figure is removed");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(!md.contains("code_length.svg") && !md.contains("By code length"));
    assert!(summary.guideline.code_length.is_none());
}

#[test]
fn the_table_at_one_lr_has_a_row_per_point_at_that_lr_with_its_delta_l() {
    let summary = summarize(&build_sweep()).unwrap();
    let table = keel_report::points_at_lr_markdown(&summary, 1e-5);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| point")).collect();
    let at_lr: Vec<&keel_report::Point> = summary.points.iter().filter(|p| p.lr == 1e-5).collect();
    assert_eq!(rows.len(), at_lr.len(), "{table}");
    for (row, p) in rows.iter().zip(&at_lr) {
        assert!(row.starts_with(&format!("| {} | ", p.label)), "{row}");
        assert!(row.contains(&format!("{:+.3}", p.delta_l_general.unwrap())), "{row}");
    }
}
