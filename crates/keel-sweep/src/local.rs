//! `keel sweep run`: the base, then every unfinished cell, each in its own process of the same
//! binary, N at a time; one progress line per change; failures isolated and named at the end.

use crate::layout::{prepare, read_status, State, SweepDir};
use crate::spec::{CellInfo, Sweep};
use anyhow::{bail, Context, Result};
use keel_infer::progress::format_duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How `keel sweep run` runs.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The keel binary that runs each cell (`keel sweep run-cell`).
    pub exe: PathBuf,
    /// Cells run at once.
    pub jobs: usize,
    /// The thread budget, split evenly between the jobs.
    pub threads: usize,
}

/// The directory a sweep writes to without `--out`: `sweeps/<file stem>`.
pub fn default_out(file: &Path) -> PathBuf {
    PathBuf::from("sweeps").join(file.file_stem().unwrap_or_default())
}

/// Spawns `exe sweep run-cell` for one unit (the base for `None`) with its stdout and stderr
/// appended to the unit's log.txt.
pub fn spawn_unit(exe: &Path, root: &Path, unit: &Path, index: Option<usize>, threads: usize) -> Result<Child> {
    std::fs::create_dir_all(unit).with_context(|| format!("cannot create {}", unit.display()))?;
    let log_path = unit.join("log.txt");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["sweep", "run-cell"]).arg(root).args(["--threads", &threads.to_string()]);
    match index {
        Some(i) => cmd.args(["--index", &i.to_string()]),
        None => cmd.arg("--base"),
    };
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))
}

/// A running unit.
struct Running {
    index: Option<usize>,
    child: Child,
    started: Instant,
}

/// The sweep-level progress: cells done of total, what runs in which phase, an ETA from the
/// cells finished so far.
struct Progress {
    total: usize,
    done: usize,
    failed: usize,
    finished_secs: Vec<f64>,
    last: String,
}

impl Progress {
    fn show(&mut self, running: &[Running], cells: &[CellInfo], dir: &SweepDir, jobs: usize) {
        let now: Vec<String> = running
            .iter()
            .map(|r| {
                let (name, id) = match r.index {
                    Some(i) => (format!("cell {i} {}", cells[i].label()), Some(cells[i].id.as_str())),
                    None => ("base".to_string(), None),
                };
                let state = match read_status(&dir.unit(id)).state {
                    State::Pending | State::Failed => "starting",
                    s => s.name(),
                };
                format!("{name} ({state})")
            })
            .collect();
        let left = self.total - self.done - self.failed;
        let eta = if self.finished_secs.is_empty() {
            "?".to_string()
        } else {
            let mean = self.finished_secs.iter().sum::<f64>() / self.finished_secs.len() as f64;
            format_duration(mean * left as f64 / jobs.min(left.max(1)) as f64)
        };
        let failed = if self.failed > 0 { format!(", {} failed", self.failed) } else { String::new() };
        let line = format!("sweep: {}/{} cells done{failed} | {} | ETA {eta}", self.done, self.total, now.join("; "));
        // Only changes are printed: the line stays readable in logs and CI.
        let key = format!("{} {} {}", self.done, self.failed, now.join(";"));
        if key != self.last {
            eprintln!("{line}");
            self.last = key;
        }
    }
}

/// Runs the sweep in `out`: the base if unfinished, then every cell not done, resuming
/// training from checkpoints. Returns the failed cells' labels (empty: all done).
pub fn run(sweep: &Sweep, out: &Path, opts: &LocalOptions) -> Result<Vec<String>> {
    let dir = SweepDir::new(&std::path::absolute(out)?);
    std::fs::create_dir_all(&dir.root).with_context(|| format!("cannot create {}", dir.root.display()))?;
    let _lock = keel_train::run::DirLock::acquire(
        &dir.root,
        "keel sweep run",
        "let it finish, or stop it (Ctrl-C) and run again: the next run resumes where it stopped",
    )?;
    prepare(sweep, &dir)?;
    let cells: Vec<CellInfo> = sweep.cells.iter().map(|c| c.info.clone()).collect();
    let jobs = opts.jobs.max(1);
    let threads = (opts.threads / jobs).max(1);
    if read_status(&dir.base()).state != State::Done {
        eprintln!("sweep: evaluating the base model (log: {})", dir.base().join("log.txt").display());
        let status = spawn_unit(&opts.exe, &dir.root, &dir.base(), None, opts.threads.max(1))?.wait()?;
        if !status.success() {
            let s = read_status(&dir.base());
            bail!(
                "the base model's evaluation failed ({}); every cell needs it. See {}",
                s.error.unwrap_or_else(|| format!("exit {status}")),
                dir.base().join("log.txt").display()
            );
        }
    }
    let mut todo: Vec<usize> =
        (0..cells.len()).filter(|&i| read_status(&dir.cell(&cells[i].id)).state != State::Done).collect();
    let mut progress = Progress {
        total: cells.len(),
        done: cells.len() - todo.len(),
        failed: 0,
        finished_secs: Vec::new(),
        last: String::new(),
    };
    eprintln!("sweep: {} cells, {} to run, {jobs} at a time with {threads} threads each", cells.len(), todo.len());
    let mut running: Vec<Running> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    while !todo.is_empty() || !running.is_empty() {
        // A merge waits until the cell it merges has finished (done or failed).
        while running.len() < jobs {
            let Some(pos) = todo.iter().position(|&i| ready(&cells[i], &todo, &running, &cells)) else { break };
            let i = todo.remove(pos);
            let child = spawn_unit(&opts.exe, &dir.root, &dir.cell(&cells[i].id), Some(i), threads)?;
            running.push(Running { index: Some(i), child, started: Instant::now() });
        }
        progress.show(&running, &cells, &dir, jobs);
        std::thread::sleep(Duration::from_millis(200));
        let mut k = 0;
        while k < running.len() {
            if running[k].child.try_wait()?.is_none() {
                k += 1;
                continue;
            }
            let r = running.remove(k);
            let i = r.index.expect("cells only");
            let s = read_status(&dir.cell(&cells[i].id));
            if s.state == State::Done {
                progress.done += 1;
                progress.finished_secs.push(r.started.elapsed().as_secs_f64());
            } else {
                progress.failed += 1;
                let why = s.error.unwrap_or_else(|| "it stopped without a status (killed?)".into());
                let log = dir.cell(&cells[i].id).join("log.txt");
                eprintln!("sweep: cell {i} ({}) failed: {why} (log: {})", cells[i].label(), log.display());
                failed.push(format!("{} ({}): {why}", cells[i].id, cells[i].label()));
            }
        }
    }
    progress.show(&running, &cells, &dir, jobs);
    Ok(failed)
}

fn ready(cell: &CellInfo, todo: &[usize], running: &[Running], cells: &[CellInfo]) -> bool {
    let Some(from) = &cell.from else { return true };
    let busy = |i: usize| cells[i].id == *from;
    !todo.iter().any(|&i| busy(i)) && !running.iter().any(|r| r.index.is_some_and(busy))
}

/// `keel sweep status`: one line per cell (and the base) with its state, time and error.
pub fn status_table(root: &Path) -> Result<String> {
    let dir = SweepDir::new(root);
    let cells = dir.cells()?;
    let mut out =
        format!("{:>5}  {:16}  {:9}  {:40}  {:10}  {:>9}  error\n", "index", "id", "method", "cell", "state", "time");
    let mut counts = std::collections::BTreeMap::new();
    let row = |index: String, id: &str, method: &str, label: &str, unit: &Path| {
        let s = read_status(unit);
        let secs: f64 = s.seconds.values().sum();
        let time = if secs > 0.0 { format_duration(secs) } else { "-".into() };
        let error = s.error.clone().unwrap_or_default().replace('\n', " ");
        let error: String = error.chars().take(100).collect();
        (s.state, format!("{index:>5}  {id:16}  {method:9}  {label:40}  {:10}  {time:>9}  {error}\n", s.state.name()))
    };
    let (_, line) = row("-".into(), "base", "base", "the base model", &dir.base());
    out.push_str(&line);
    for c in &cells {
        let (state, line) = row(c.index.to_string(), &c.id, &c.method, &c.label(), &dir.cell(&c.id));
        *counts.entry(state.name()).or_insert(0) += 1;
        out.push_str(&line);
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out.push_str(&format!("{} cells: {}\n", cells.len(), summary.join(", ")));
    Ok(out)
}
