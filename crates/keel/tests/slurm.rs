//! `keel sweep submit --slurm` against a real single-node Slurm (scripts/slurm-local.sh): a
//! 2-cell tiny sweep through the job array, then the report job. Skips, saying why, where the
//! daemons cannot start (no root, no apt, another Slurm on the port).

use keel_testkit::{repo_root, tiny_config, tiny_setup};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Daemons(PathBuf);

impl Drop for Daemons {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/slurm-local.sh")).arg("stop").arg(&self.0).status();
    }
}

fn job_state(conf: &Path, id: &str) -> String {
    let out = Command::new("scontrol").env("SLURM_CONF", conf).args(["show", "job", id]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or("UNKNOWN").to_string()
}

#[test]
fn a_tiny_sweep_runs_through_a_real_slurm_job_array_and_the_report_job() {
    let dir = std::env::temp_dir().join(format!("keel-slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let daemons = dir.join("slurm");
    let start = Command::new(repo_root().join("scripts/slurm-local.sh")).arg("start").arg(&daemons).output().unwrap();
    if !start.status.success() {
        eprintln!("SKIPPED: no Slurm here: {}", String::from_utf8_lossy(&start.stderr).trim());
        return;
    }
    let _stop = Daemons(daemons.clone());
    let conf = daemons.join("slurm.conf");
    eprintln!("slurm: {}", String::from_utf8_lossy(&start.stdout).trim());

    let (model, data) = tiny_setup(&std::env::temp_dir().join("keel-sweep-tests"), &dir.join("data"), 24);
    let base = dir.join("base.toml");
    std::fs::write(&base, tiny_config(&model, &data, &dir.join("unused"), "")).unwrap();
    let sweep = dir.join("sweep.toml");
    std::fs::write(
        &sweep,
        format!(
            "base = {base:?}\n[axes]\ntrain.lr = [1e-3, 3e-3]\n[eval]\ndomain = [\"gsm8k\"]\ngeneral = [\"arc_easy\"]\nlimit = 4\nmax_new_tokens = 8\ndata_dir = {:?}\n\
             [analyze]\ndomain_limit = 4\n",
            keel_testkit::shared_data()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let submit = Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(repo_root())
        .env("SLURM_CONF", &conf)
        .args(["sweep", "submit", sweep.to_str().unwrap(), "--slurm", "--out", out.to_str().unwrap()])
        .args(["--cpus-per-task", "1", "--max-parallel", "2"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&submit.stdout).into_owned();
    assert!(submit.status.success(), "{printed}{}", String::from_utf8_lossy(&submit.stderr));
    eprintln!("submitted (job id, script):\n{printed}");
    let ids: Vec<String> = printed.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "base, one array, report: {printed}");
    let report = ids[2].clone();

    let started = Instant::now();
    let mut last = String::new();
    loop {
        let states: Vec<String> = ids.iter().map(|id| format!("{id}={}", job_state(&conf, id))).collect();
        let line = states.join(" ");
        if line != last {
            eprintln!("{:>4.0} s  {line}", started.elapsed().as_secs_f64());
            last = line;
        }
        if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].iter().any(|s| job_state(&conf, &report) == *s) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "the jobs did not finish in 15 minutes: {last}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let status =
        Command::new(env!("CARGO_BIN_EXE_keel")).args(["sweep", "status", out.to_str().unwrap()]).output().unwrap();
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("{table}");
    assert!(table.contains("2 cells: 2 done"), "{table}");
    for entry in std::fs::read_dir(out.join("cells")).unwrap() {
        let cell = entry.unwrap().path();
        assert!(cell.join("eval/results.json").exists() && cell.join("analyze.json").exists());
        let log = std::fs::read_to_string(cell.join("log.txt")).unwrap();
        assert!(log.contains("wrote") && log.contains("eval/results.json"), "{log}");
    }
    let logs: Vec<String> = std::fs::read_dir(out.join("slurm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".out"))
        .collect();
    eprintln!("slurm output files: {logs:?}");
    assert_eq!(logs.iter().filter(|n| n.starts_with("train-0-")).count(), 2, "one log per array task: {logs:?}");
    let report_log = std::fs::read_to_string(out.join("slurm").join(format!("report-{report}.out"))).unwrap();
    eprintln!("report job {report}: {} (its output: {})", job_state(&conf, &report), report_log.trim());
    // `keel report` arrives with another branch: until then the report job runs and says the
    // subcommand is unknown; with it, the job must succeed.
    let has_report =
        Command::new(env!("CARGO_BIN_EXE_keel")).args(["report", "--help"]).output().unwrap().status.success();
    if has_report {
        assert_eq!(job_state(&conf, &report), "COMPLETED", "{report_log}");
    } else {
        assert!(report_log.contains("report"), "the report job did not run keel report: {report_log}");
    }
}
