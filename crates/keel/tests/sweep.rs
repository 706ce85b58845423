//! `keel sweep` end to end: the tiny model for speed, one sweep on the default model, a kill
//! and a resume, a failing method, and Slurm submission with a fake `sbatch`.

use keel_testkit::{repo_root, shared_data, tiny_config, tiny_setup};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The sweeps below each keep both cores busy; run them one at a time so that the 5-minute
/// budget measures one sweep, not three sharing the machine.
fn one_sweep_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn keel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(repo_root());
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny sweep (sft and talr × 2 learning rates, plus `extra` methods) in `dir`.
fn tiny_sweep(dir: &Path, extra: &str) -> PathBuf {
    let (model, data) = tiny_setup(&std::env::temp_dir().join("keel-sweep-tests"), &dir.join("data"), 24);
    let base = dir.join("base.toml");
    std::fs::write(&base, tiny_config(&model, &data, &dir.join("unused"), "")).unwrap();
    let text = format!(
        "base = {base:?}\n[axes]\ntrain.lr = [1e-3, 3e-3]\n\n[[methods]]\nname = \"sft\"\ntrain.objective = \"ce\"\n\n\
         [[methods]]\nname = \"talr\"\ntrain.objective = \"talr\"\n{extra}\n\
         [eval]\ndomain = [\"gsm8k\"]\ngeneral = [\"arc_easy\"]\nlimit = 4\nbatch_rows = 4\nmax_new_tokens = 8\n\
         data_dir = {:?}\n\n\
         [analyze]\ndomain_limit = 4\ngeneral_limit = 2\nmax_new_tokens = 8\n",
        shared_data()
    );
    let file = dir.join("sweep.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn run(args: &[&str]) -> Output {
    keel().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn cells(out: &Path) -> Vec<Value> {
    read(&out.join("sweep.json"))["cells"].as_array().unwrap().clone()
}

fn state(out: &Path, id: &str) -> String {
    std::fs::read_to_string(out.join("cells").join(id).join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["state"].as_str().map(String::from))
        .unwrap_or_else(|| "pending".into())
}

/// The step of a cell's newest checkpoint (0: none).
fn checkpoint_step(out: &Path, id: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(out.join("cells").join(id).join("run")) else { return 0 };
    dir.filter_map(|e| e.ok()?.file_name().to_string_lossy().strip_prefix("checkpoint-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Drops what changes from run to run (timings) from a results.json.
fn without_timing(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| *k != "seconds" && !k.ends_with("_per_s"))
                .map(|(k, v)| (k.clone(), without_timing(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_timing).collect()),
        _ => v.clone(),
    }
}

#[test]
fn kill_and_resume_finishes_only_the_missing_cells_with_the_same_results() {
    let _one = one_sweep_at_a_time();
    let dir = scratch("kill");
    let file = tiny_sweep(&dir, "");
    // Longer training than the other tiny sweeps: the kill must land mid-training.
    let longer = std::fs::read_to_string(&file).unwrap().replace("[axes]\n", "[axes]\ntrain.max_steps = [40]\n");
    std::fs::write(&file, longer).unwrap();
    let (a, b) = (dir.join("a"), dir.join("b"));
    let f = file.to_str().unwrap();
    let whole = run(&["sweep", "run", f, "--out", a.to_str().unwrap(), "--jobs", "2", "--threads", "2"]);
    assert!(whole.status.success(), "{}", text(&whole));

    let mut child = keel()
        .args(["sweep", "run", f, "--out", b.to_str().unwrap(), "--jobs", "2", "--threads", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once a cell is done and another is mid-training with a checkpoint.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(600), "the sweep never reached the kill point");
        assert!(child.try_wait().unwrap().is_none(), "the sweep finished before it could be killed");
        if b.join("sweep.json").exists() {
            let ids: Vec<String> = cells(&b).iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
            let done = ids.iter().filter(|id| state(&b, id) == "done").count();
            // Of 40 steps, checkpointed every 2: early enough that the kill lands mid-training.
            let midway =
                ids.iter().any(|id| state(&b, id) == "training" && (2..=20).contains(&checkpoint_step(&b, id)));
            if done >= 1 && midway {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The cells' own processes notice their parent is gone and stop.
    std::thread::sleep(Duration::from_secs(2));
    let ids: Vec<String> = cells(&b).iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    let missing = ids.iter().filter(|id| state(&b, id) != "done").count();
    assert!(missing > 0 && missing < ids.len(), "{missing} of {} cells missing", ids.len());
    let interrupted: Vec<String> =
        ids.iter().filter(|id| state(&b, id) == "training" && checkpoint_step(&b, id) > 0).cloned().collect();
    assert!(!interrupted.is_empty(), "no cell was left mid-training by the kill");

    let again = run(&["sweep", "run", f, "--out", b.to_str().unwrap(), "--jobs", "2", "--threads", "2"]);
    let log = text(&again);
    assert!(again.status.success(), "{log}");
    assert!(log.contains(&format!("{} cells, {missing} to run", ids.len())), "{log}");
    for id in &interrupted {
        let log = std::fs::read_to_string(b.join("cells").join(id).join("log.txt")).unwrap();
        assert!(log.contains("resuming from"), "cell {id} did not resume from its checkpoint:\n{log}");
    }
    for id in &ids {
        for file in ["eval/results.json", "analyze.json"] {
            let (x, y) = (read(&a.join("cells").join(id).join(file)), read(&b.join("cells").join(id).join(file)));
            assert_eq!(without_timing(&x), without_timing(&y), "cell {id}: {file} differs after the resume");
        }
    }
    // Nothing left to do: a third run redoes nothing.
    let third = run(&["sweep", "run", f, "--out", b.to_str().unwrap()]);
    assert!(text(&third).contains("0 to run"), "{}", text(&third));
    // The report of the killed and resumed sweep is the uninterrupted sweep's, byte for byte.
    for d in [&a, &b] {
        let r = run(&["report", d.to_str().unwrap()]);
        assert!(r.status.success(), "{}", text(&r));
    }
    let summary = |d: &Path| std::fs::read(d.join("summary.json")).unwrap();
    assert!(summary(&a) == summary(&b), "summary.json differs after a kill and resume");
}

#[test]
fn a_failing_method_fails_alone_and_is_named() {
    let _one = one_sweep_at_a_time();
    let dir = scratch("fail");
    let file = tiny_sweep(&dir, "\n[[methods]]\nname = \"broken\"\ndata.path = \"/no/such/data.jsonl\"\n");
    let out = dir.join("out");
    let o =
        run(&["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--jobs", "2", "--threads", "2"]);
    let log = text(&o);
    assert!(!o.status.success(), "{log}");
    let all = cells(&out);
    let broken: Vec<&str> = all.iter().filter(|c| c["method"] == "broken").map(|c| c["id"].as_str().unwrap()).collect();
    assert!(log.contains("2 of 6 cells failed"), "{log}");
    for id in &broken {
        assert!(log.contains(id), "{id} not named: {log}");
        assert_eq!(state(&out, id), "failed");
        let status = read(&out.join("cells").join(id).join("status.json"));
        assert!(status["error"].as_str().unwrap().contains("/no/such/data.jsonl"), "{status}");
    }
    for c in all.iter().filter(|c| c["method"] != "broken") {
        assert_eq!(state(&out, c["id"].as_str().unwrap()), "done");
    }
    let table = text(&run(&["sweep", "status", out.to_str().unwrap()]));
    assert!(table.contains("6 cells: 4 done, 2 failed"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("broken") && l.contains("failed")).count(), 2, "{table}");
    // The report still comes out, and lists the failed cells with their error.
    let r = run(&["report", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for id in &broken {
        assert!(markdown.contains(id) && markdown.contains("/no/such/data.jsonl"), "{id} not listed in report.md");
    }
}

#[test]
fn submit_writes_job_arrays_and_a_report_job_for_a_fake_sbatch() {
    let dir = scratch("fake-slurm");
    let file = tiny_sweep(&dir, "");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("sbatch-calls.txt");
    let sbatch = "#!/bin/sh\necho \"$@\" >> \"$FAKE_SBATCH_LOG\"\nn=$(wc -l < \"$FAKE_SBATCH_LOG\")\necho \"$((100 + n));local\"\n";
    std::fs::write(bin.join("sbatch"), sbatch).unwrap();
    std::fs::write(bin.join("scontrol"), "#!/bin/sh\necho 'MaxArraySize            = 3'\n").unwrap();
    for tool in ["sbatch", "scontrol"] {
        Command::new("chmod").arg("+x").arg(bin.join(tool)).status().unwrap();
    }
    let out = dir.join("out");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = keel()
        .env("PATH", path)
        .env("FAKE_SBATCH_LOG", &calls)
        .args(["sweep", "submit", file.to_str().unwrap(), "--slurm", "--out", out.to_str().unwrap()])
        .args(["--partition", "debug", "--cpus-per-task", "1", "--max-parallel", "2", "--time", "00:30:00"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let slurm = out.join("slurm");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    let expected = [
        format!("--parsable {}", slurm.join("base.sh").display()),
        format!("--parsable --dependency=afterany:101 {}", slurm.join("train-0.sh").display()),
        format!("--parsable --dependency=afterany:101 {}", slurm.join("train-3.sh").display()),
        format!("--parsable --dependency=afterany:102:103:101 {}", slurm.join("report.sh").display()),
    ];
    assert_eq!(recorded.lines().collect::<Vec<_>>(), expected);
    let first = std::fs::read_to_string(slurm.join("train-0.sh")).unwrap();
    for want in [
        "#SBATCH --array=0-2%2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=00:30:00",
        "SLURM_ARRAY_TASK_ID + 0",
        "--log",
    ] {
        assert!(first.contains(want), "{want} missing:\n{first}");
    }
    let rest = std::fs::read_to_string(slurm.join("train-3.sh")).unwrap();
    assert!(rest.contains("#SBATCH --array=0-0%2") && rest.contains("SLURM_ARRAY_TASK_ID + 3"), "{rest}");
    let report = std::fs::read_to_string(slurm.join("report.sh")).unwrap();
    assert!(report.contains(&format!("report '{}'", out.display())), "{report}");
    let jobs = read(&slurm.join("jobs.json"));
    assert_eq!(
        jobs.as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["101", "102", "103", "104"]
    );
    // Nothing ran: the cells wait for the cluster.
    assert!(text(&run(&["sweep", "status", out.to_str().unwrap()])).contains("4 cells: 4 pending"));
}

#[test]
fn four_cells_on_the_default_model_in_under_five_minutes() {
    let _one = one_sweep_at_a_time();
    let dir = scratch("default");
    let model = keel_testkit::default_model_path();
    let gsm8k = shared_data().join("gsm8k/train.jsonl");
    let text_ = format!(
        "[base]\nmodel.path = {model:?}\n\
         data = {{ path = {gsm8k:?}, format = \"gsm8k\", max_examples = 8, max_seq_len = 256 }}\n\
         train = {{ max_steps = 2, micro_batch_size = 1, schedule = \"constant\" }}\n\
         [axes]\ntrain.lr = [1e-5, 3e-5]\n\
         [[methods]]\nname = \"sft\"\ntrain.objective = \"ce\"\n\
         [[methods]]\nname = \"talr\"\ntrain.objective = \"talr\"\n\
         [eval]\ndomain = [\"gsm8k\"]\ngeneral = [\"arc_easy\"]\nlimit = 4\nmax_new_tokens = 32\ndata_dir = {:?}\n\
         [analyze]\ndomain_limit = 2\ngeneral_limit = 1\nmax_new_tokens = 16\n",
        shared_data()
    );
    let file = dir.join("sweep.toml");
    std::fs::write(&file, text_).unwrap();
    let out = dir.join("out");
    let started = Instant::now();
    let o = run(&["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = run(&["report", out.to_str().unwrap()]);
    let secs = started.elapsed().as_secs_f64();
    assert!(r.status.success(), "{}", text(&r));
    for f in ["summary.json", "report.html", "report.md", "pareto.svg", "code_length.svg", "lr_curves.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    eprintln!("4-cell sweep on the default model, report included: {secs:.0} s");
    assert!(secs < 300.0, "took {secs:.0} s");
    let manifest = read(&out.join("sweep.json"));
    assert_eq!(manifest["sweep_hash"].as_str().unwrap().len(), 16);
    assert_eq!(manifest["eval"]["domain_tasks"], serde_json::json!(["gsm8k"]));
    assert_eq!(manifest["eval"]["general_tasks"], serde_json::json!(["arc_easy"]));
    assert_eq!(read(&out.join("base/analyze.json"))["domain"]["delta_l"], 0.0);
    assert!(out.join("base/eval/arc_easy.samples.jsonl").exists() && out.join("sweep.toml").exists());
    for c in cells(&out) {
        let cell = out.join("cells").join(c["id"].as_str().unwrap());
        for f in [
            "cell.json",
            "config.toml",
            "run/metrics.jsonl",
            "run/final/config.json",
            "eval/gsm8k.samples.jsonl",
            "log.txt",
        ] {
            assert!(cell.join(f).exists(), "{} missing", cell.join(f).display());
        }
        assert_eq!(read(&cell.join("status.json"))["state"], "done");
        let results = read(&cell.join("eval/results.json"));
        assert_eq!(
            (results["tasks"]["arc_easy"]["n"].as_u64(), results["tasks"]["gsm8k"]["n"].as_u64()),
            (Some(4), Some(4))
        );
        let analysis = read(&cell.join("analyze.json"));
        assert!(analysis["domain"]["delta_l"].is_f64() && analysis["general"]["delta_l"].is_f64(), "{analysis}");
    }
    let dry = text(&run(&["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--dry-run"]));
    assert!(dry.contains("4 cells, 0 to run") && dry.contains("measured: median of"), "{dry}");
    // 2 GB of models and checkpoints: kept only when the test fails, for a look.
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[analyze] general_data`: the general ΔL measures a file of written responses (the base's own
/// answers are never generated), the same code length `keel analyze` gives them, and the report
/// names the file.
#[test]
fn general_data_measures_written_references_and_the_report_names_the_file() {
    let _one = one_sweep_at_a_time();
    let dir = scratch("general-data");
    let file = tiny_sweep(&dir, "");
    let refs = keel_testkit::tiny_data(&dir.join("refs"), 3);
    let sweep =
        std::fs::read_to_string(&file).unwrap().replace("train.lr = [1e-3, 3e-3]", "train.lr = [1e-3]").replace(
            "general_limit = 2\n",
            &format!("general_limit = 0\ngeneral_data = {:?}\n", refs.display().to_string()),
        );
    let out = dir.join("out");
    let args = ["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"];
    // A missing file is refused before anything runs, naming the key.
    std::fs::write(&file, sweep.replace("refs/data.jsonl", "refs/missing.jsonl")).unwrap();
    let o = run(&args);
    assert!(!o.status.success() && text(&o).contains("analyze.general_data"), "{}", text(&o));
    assert!(!out.join("base/status.json").exists(), "the base ran before the bad key was found");
    std::fs::write(&file, sweep).unwrap();
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!out.join("base/general_responses.json").exists(), "the base generated general answers");
    let base = read(&out.join("base/analyze.json"));
    let cell = out.join("cells").join(cells(&out)[0]["id"].as_str().unwrap());
    assert!(read(&cell.join("analyze.json"))["general"]["delta_l"].is_f64());

    let model = read(&out.join("sweep.json"))["settings"]["base"]["model"]["path"].as_str().unwrap().to_string();
    let direct = dir.join("direct");
    let o = keel()
        .args(["analyze", "--model", &model, "--data"])
        .arg(&refs)
        .args(["--format", "prompt_completion", "--limit", "0", "--out"])
        .arg(&direct)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let direct = read(&direct.join("analysis.json"));
    let (sweep_nll, direct_nll) =
        (base["general"]["code_length"].as_f64().unwrap(), direct["domain"]["model"]["mean_nll"].as_f64().unwrap());
    assert!((sweep_nll - direct_nll).abs() < 1e-5 * direct_nll, "{sweep_nll} vs {direct_nll}");

    let r = run(&["report", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    let summary = read(&out.join("summary.json"));
    assert_eq!(summary["provenance"]["general_data"], refs.display().to_string());
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains(&format!("written by people in {}", refs.display())), "{markdown}");
    assert!(!markdown.contains("sharpened on its own"), "{markdown}");
}

#[test]
fn a_locked_sweep_directory_is_refused_and_keep_weights_false_leaves_no_weights() {
    let _one = one_sweep_at_a_time();
    let dir = scratch("lock");
    let file = tiny_sweep(&dir, "");
    let original = std::fs::read_to_string(&file).unwrap();
    let changed = original.replace("\nlimit = 4\n", "\nlimit = { default = 4, gsm8k = 2 }\n");
    std::fs::write(&file, format!("keep_weights = false\n{changed}")).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Another `keel sweep run` holds the directory: this one is refused, naming its pid.
    let holder =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(out.join(".keel.lock")).unwrap();
    holder.try_lock().unwrap();
    std::fs::write(out.join(".keel.lock"), "4242").unwrap();
    let args = ["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"];
    let o = run(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in use by another keel sweep run (pid 4242)"), "{}", text(&o));
    assert!(!out.join("sweep.json").exists(), "a refused run writes nothing");
    drop(holder);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    for c in cells(&out) {
        let cell = out.join("cells").join(c["id"].as_str().unwrap());
        assert_eq!(state(&out, c["id"].as_str().unwrap()), "done");
        assert!(!cell.join("run/final").exists(), "{} kept its weights", cell.display());
        let results = read(&cell.join("eval/results.json"));
        assert_eq!(results["limit"], serde_json::json!({"default": 4, "gsm8k": 2}));
        assert_eq!(
            (results["tasks"]["gsm8k"]["n"].as_u64(), results["tasks"]["arc_easy"]["n"].as_u64()),
            (Some(2), Some(4))
        );
    }
    let r = run(&["report", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    wise_ft_added_later_trains_its_sources_again(&file, &out, &changed);
}

/// WiSE-FT added afterwards merges SFT cells whose weights are gone: each is trained again and its
/// losses are checked against the record, then it keeps its weights. One record is made 2% off
/// (as under other BLAS kernels: merged, with a warning) and one 50% off (another run: the merge
/// fails); with that record restored, the merge repeats the run exactly.
fn wise_ft_added_later_trains_its_sources_again(file: &Path, out: &Path, changed: &str) {
    let args = ["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"];
    std::fs::write(file, format!("keep_weights = false\nwise_ft = {{ from = \"sft\", alpha = [0.5] }}\n{changed}"))
        .unwrap();
    let spec = keel_sweep::spec::Sweep::load(file).unwrap();
    let merges: Vec<(String, PathBuf)> = spec
        .cells
        .iter()
        .filter(|c| c.info.kind == "merge")
        .map(|c| (c.info.id.clone(), out.join("cells").join(c.info.from.as_deref().unwrap())))
        .collect();
    assert_eq!(merges.len(), 2, "one merge per SFT cell");
    // The dry run counts the retraining: each merge costs what its source cost. (The tiny model
    // trains in milliseconds, so its logged throughput is set to 1 token/s for this check.)
    let metrics: Vec<(PathBuf, String)> = cells(out)
        .iter()
        .map(|c| out.join("cells").join(c["id"].as_str().unwrap()).join("run/metrics.jsonl"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    for (p, text) in &metrics {
        let slow: Vec<String> = text
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["tokens_per_s"] = serde_json::json!(1.0);
                v.to_string()
            })
            .collect();
        std::fs::write(p, slow.join("\n") + "\n").unwrap();
    }
    let dry = text(&run(&["sweep", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--dry-run"]));
    let time_of = |id: &str| dry.lines().find(|l| l.contains(id)).and_then(|l| l.split_whitespace().last()).unwrap();
    for (id, source) in &merges {
        let source_id = source.file_name().unwrap().to_str().unwrap();
        assert!(time_of(id) == time_of(source_id) && time_of(id) != "0m00s", "{dry}");
    }
    for (p, text) in &metrics {
        std::fs::write(p, text).unwrap();
    }
    let scale_losses = |source: &Path, by: f64| {
        let metrics = source.join("run/metrics.jsonl");
        let original = std::fs::read_to_string(&metrics).unwrap();
        let scaled: Vec<String> = original
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["loss"] = serde_json::json!(v["loss"].as_f64().unwrap() * by);
                v.to_string()
            })
            .collect();
        std::fs::write(&metrics, scaled.join("\n") + "\n").unwrap();
        original
    };
    let (near, far) = (&merges[0], &merges[1]);
    scale_losses(&near.1, 1.02);
    let far_record = scale_losses(&far.1, 1.5);
    let o = run(&args);
    assert!(!o.status.success(), "a merge whose source trained into another run fails: {}", text(&o));
    let log = |id: &str| std::fs::read_to_string(out.join("cells").join(id).join("log.txt")).unwrap_or_default();
    assert_eq!(state(out, &near.0), "done");
    let near_log = log(&near.0);
    assert!(
        near_log.contains("training it again") && near_log.contains("differ from the record by up to 1.96%"),
        "{near_log}"
    );
    assert_eq!(state(out, &far.0), "failed");
    let status = read(&out.join("cells").join(&far.0).join("status.json"));
    assert!(status["error"].as_str().unwrap().contains("did not repeat its run"), "{status}");
    assert!(!far.1.join("run/final").exists() && !out.join("cells").join(&far.0).join("source-run").exists());
    std::fs::write(far.1.join("run/metrics.jsonl"), far_record).unwrap();
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(log(&far.0).contains("trained again to its recorded losses"), "{}", log(&far.0));
    for (id, source) in &merges {
        assert_eq!(state(out, id), "done");
        let cell = out.join("cells").join(id);
        assert!(cell.join("eval/results.json").exists() && !cell.join("source-run").exists());
        assert!(source.join("run/final/config.json").exists(), "{} has no weights", source.display());
    }
}
