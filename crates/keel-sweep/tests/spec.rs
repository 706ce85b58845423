//! The sweep file as a user writes it: strict keys, clear errors naming file and key, stable
//! cell ids, and a sweep directory that refuses another sweep file's settings.

use keel_sweep::layout::{prepare, SweepDir};
use keel_sweep::Sweep;
use std::path::PathBuf;

const BASE: &str = r#"
[base]
model.path = "m.gguf"
data = { path = "d.jsonl", format = "prompt_completion" }
train = { lr = 1e-3, max_steps = 4, seed = 3 }
"#;

const REST: &str = r#"
[axes]
train.lr = [1e-3, 3e-3]

[[methods]]
name = "sft"
train.objective = "ce"

[[methods]]
name = "talr"
train.objective = "talr"
talr.floor = 0.05

[eval]
general = ["arc_easy"]
limit = 4
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-sweep-spec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, text: &str) -> PathBuf {
    let p = dir.join("sweep.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn error(text: &str) -> String {
    let dir = scratch("err");
    let file = write(&dir, text);
    let e = format!("{:#}", Sweep::load(&file).expect_err("should be refused"));
    assert!(e.contains(&file.display().to_string()), "the error names the file: {e}");
    e
}

#[test]
fn bad_input_is_refused_naming_file_and_key() {
    let ok = format!("{BASE}{REST}");
    let cases: Vec<(String, &[&str])> = vec![
        (format!("{ok}colour = 1\n"), &["colour"]),
        (ok.replace("limit = 4", "limt = 4"), &["limt"]),
        (ok.replace("seed = 3", "seed = 3, learning_rate = 1"), &["learning_rate", "[base]"]),
        (ok.replace("train.lr = [1e-3, 3e-3]", "train.lr = []"), &["[axes] train.lr is empty"]),
        (
            ok.replace("train.lr = [1e-3, 3e-3]", "train.learning_rate = [1e-3]"),
            &["[axes]", "train.learning_rate", "lr"],
        ),
        (ok.replace("talr.floor = 0.05", "talr.flor = 0.05"), &["methods[1] (\"talr\")", "talr.flor", "floor"]),
        (ok.replace("talr.floor = 0.05", "tlar.floor = 0.05"), &["tlar.floor", "the run config has", "talr"]),
        (ok.replace("train.objective = \"ce\"", "train.lr = 1e-4"), &["sets train.lr, which [axes] varies"]),
        (
            ok.replace("train.objective = \"ce\"", "train.objective = \"sft\""),
            &["method \"sft\"", "train.objective: unknown variant `sft`"],
        ),
        (ok.replace("[axes]", "[wise_ft]\nfrom = \"lora\"\nalpha = [0.5]\n[axes]"), &["wise_ft.from = \"lora\""]),
        (ok.replace("[axes]", "[wise_ft]\nfrom = \"sft\"\nalpha = [1.5]\n[axes]"), &["wise_ft.alpha", "1.5"]),
        (ok.replace("[\"arc_easy\"]", "[\"arc_eazy\"]"), &["eval.general", "arc_eazy"]),
        (ok.replace("name = \"talr\"", "name = \"sft\""), &["methods[1]", "\"sft\" is taken"]),
        (ok.replace("limit = 4", "limit = { default = 4, ifevl = 2 }"), &["eval.limit", "ifevl", "arc_easy"]),
        (ok.replace("limit = 4", "limit = 4\nmax_new_tokens = { gsm8k = 9 }"), &["eval.max_new_tokens", "gsm8k"]),
        (ok.replace("limit = 4", "limit = \"four\""), &["limit", "a table of numbers"]),
        (
            ok.replace("talr.floor = 0.05", "axes = { \"train.seed\" = [1] }"),
            &["methods[1]", "axes.train.seed", "not one of [axes]"],
        ),
        (
            ok.replace("talr.floor = 0.05", "axes = { \"train.lr\" = [5e-3] }"),
            &["methods[1]", "axes.train.lr has 0.005"],
        ),
        (ok.replace("talr.floor = 0.05", "axes = { \"train.lr\" = [] }"), &["axes.train.lr is empty"]),
    ];
    for (text, wanted) in cases {
        let e = error(&text);
        for w in wanted {
            assert!(e.contains(w), "{w:?} missing from: {e}");
        }
    }
}

#[test]
fn a_method_restricted_to_some_axis_values_runs_only_there_with_the_same_ids() {
    let dir = scratch("only");
    let all = Sweep::load(&write(&dir, &format!("{BASE}{REST}"))).unwrap();
    let text = format!("{BASE}{REST}").replace("talr.floor = 0.05", "talr.floor = 0.05\naxes.train.lr = [3e-3]");
    let only = Sweep::load(&write(&dir, &text)).unwrap();
    let talr: Vec<_> = only.cells.iter().filter(|c| c.info.method == "talr").collect();
    assert_eq!((only.cells.len(), talr.len()), (3, 1));
    assert_eq!(talr[0].info.lr, 3e-3);
    // Restricting a method drops cells; it renames none.
    for c in &only.cells {
        assert!(all.cells.iter().any(|a| a.info.id == c.info.id), "{} changed its id", c.info.label());
    }
}

#[test]
fn cells_cross_methods_with_axes_and_merges_follow() {
    let dir = scratch("cross");
    let text = format!("{BASE}[wise_ft]\nfrom = \"sft\"\nalpha = [0.25, 0.5]\n{REST}");
    let sweep = Sweep::load(&write(&dir, &text)).unwrap();
    let labels: Vec<String> = sweep.cells.iter().map(|c| c.info.label()).collect();
    assert_eq!(
        labels,
        [
            "sft lr=1e-3 seed=3",
            "sft lr=3e-3 seed=3",
            "talr lr=1e-3 seed=3",
            "talr lr=3e-3 seed=3",
            "wise_ft lr=1e-3 seed=3 α=0.25",
            "wise_ft lr=1e-3 seed=3 α=0.5",
            "wise_ft lr=3e-3 seed=3 α=0.25",
            "wise_ft lr=3e-3 seed=3 α=0.5"
        ]
    );
    let talr = sweep.cells[2].config.as_ref().unwrap();
    assert_eq!(
        (talr.train.objective, talr.talr.floor, talr.train.lr),
        (keel_train::objective::ObjectiveKind::Talr, 0.05, 1e-3)
    );
    assert_eq!(sweep.cells[4].info.from.as_deref(), Some(sweep.cells[0].info.id.as_str()));
    assert!(sweep.cells.iter().enumerate().all(|(i, c)| c.info.index == i));
    // wise_ft.axes merges only the source cells at those values; the merges' ids do not change.
    let text = format!("{BASE}[wise_ft]\nfrom = \"sft\"\nalpha = [0.5]\naxes = {{ \"train.lr\" = [3e-3] }}\n{REST}");
    let only = Sweep::load(&write(&dir, &text)).unwrap();
    let merges: Vec<&keel_sweep::spec::CellInfo> =
        only.cells.iter().map(|c| &c.info).filter(|c| c.kind == "merge").collect();
    assert_eq!(merges.iter().map(|c| c.label()).collect::<Vec<_>>(), ["wise_ft lr=3e-3 seed=3 α=0.5"]);
    assert_eq!(merges[0].id, sweep.cells[7].info.id);
    for (axes, want) in [
        ("{ \"train.lr\" = [5e-3] }", "axes.train.lr has 0.005, which [axes] train.lr does not"),
        ("{ \"train.seed\" = [3] }", "wise_ft: axes.train.seed is not one of [axes]"),
    ] {
        let text = format!("{BASE}[wise_ft]\nfrom = \"sft\"\nalpha = [0.5]\naxes = {axes}\n{REST}");
        let Err(e) = Sweep::load(&write(&dir, &text)) else { panic!("{axes} was accepted") };
        let err = format!("{e:#}");
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn cell_ids_are_stable_and_ignore_where_and_how_fast_a_cell_runs() {
    let dir = scratch("ids");
    let ids = |text: &str| -> Vec<String> {
        Sweep::load(&write(&dir, text)).unwrap().cells.iter().map(|c| c.info.id.clone()).collect()
    };
    let plain = ids(&format!("{BASE}{REST}"));
    // Pinned: a change here silently orphans every existing sweep directory's cells.
    assert_eq!(plain, ["4fabc704f6287859", "0550ffe823db079b", "e55cee2dbfb2c83c", "05976e5c04f3635e"]);
    let elsewhere =
        format!("{BASE}output = {{ dir = \"elsewhere\" }}\n{REST}").replace("seed = 3", "seed = 3, threads = 7");
    assert_eq!(ids(&elsewhere), plain);
    let quoted = format!("{BASE}{REST}").replace("train.lr = [", "\"train.lr\" = [");
    assert_eq!(ids(&quoted), plain);
    let other_lr = format!("{BASE}{REST}").replace("3e-3]", "2e-3]");
    let moved = ids(&other_lr);
    assert_eq!((moved[0].as_str(), moved[2].as_str()), (plain[0].as_str(), plain[2].as_str()));
    assert_ne!(moved[1], plain[1]);
}

#[test]
fn a_sweep_directory_refuses_another_sweep_files_settings_but_takes_new_cells() {
    let dir = scratch("reuse");
    let out = SweepDir::new(&dir.join("out"));
    let file = write(&dir, &format!("{BASE}{REST}"));
    prepare(&Sweep::load(&file).unwrap(), &out).unwrap();
    assert_eq!(out.cells().unwrap().len(), 4);
    let more = write(&dir, &format!("{BASE}{REST}").replace("3e-3]", "3e-3, 1e-2]"));
    prepare(&Sweep::load(&more).unwrap(), &out).unwrap();
    assert_eq!(out.cells().unwrap().len(), 6);
    for (from, to, key) in [
        ("limit = 4", "limit = 5", "eval.limit"),
        ("limit = 4", "limit = { default = 4, arc_easy = 2 }", "eval.limit"),
        ("\"m.gguf\"", "\"other.gguf\"", "base.model.path"),
        ("[eval]", "[analyze]\ngeneral_limit = 3\n[eval]", "analyze.general_limit"),
    ] {
        let other = write(&dir, &format!("{BASE}{REST}").replace(from, to));
        let e = format!("{:#}", prepare(&Sweep::load(&other).unwrap(), &out).unwrap_err());
        assert!(e.contains(key) && e.contains("another sweep file") && e.contains("sweep.toml"), "{e}");
    }
}
