//! `keel sweep submit --slurm`: the base as one job, the cells as job arrays (one task per cell,
//! split where the cluster's MaxArraySize demands), and `keel report` after them all; submitted
//! with `sbatch --parsable`. Nothing stays behind to watch: `keel sweep status` reads the status
//! files on the shared filesystem.

use crate::layout::{prepare, write_json, SweepDir};
use crate::spec::Sweep;
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cluster side of a submission.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// The keel binary every job runs (on the shared filesystem).
    pub exe: PathBuf,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--cpus-per-task` (also each cell's thread count).
    pub cpus_per_task: usize,
    /// `--time` of each job.
    pub time: Option<String>,
    /// At most this many array tasks at once (`%M`; 0: no limit).
    pub max_parallel: usize,
    /// The `sbatch` program.
    pub sbatch: PathBuf,
    /// The `scontrol` program (for MaxArraySize).
    pub scontrol: PathBuf,
}

/// A job to submit: its script's name and text, and the jobs it waits for (by position).
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// File name under `SWEEP_DIR/slurm/`.
    pub name: String,
    /// The batch script.
    pub script: String,
    /// Positions in the job list of the jobs this one waits for (`afterany`).
    pub after: Vec<usize>,
}

/// What was submitted.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// (script path, job id), in submission order; the report job is last.
    pub jobs: Vec<(PathBuf, String)>,
}

/// The cluster's MaxArraySize from `scontrol show config`, else Slurm's default, 1001.
pub fn max_array_size(scontrol: &Path) -> usize {
    let out = Command::new(scontrol).args(["show", "config"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(1001)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn header(opts: &SlurmOptions, name: &str, output: &str, array: Option<String>) -> String {
    let mut s = format!("#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={output}\n");
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", opts.cpus_per_task));
    if let Some(p) = &opts.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &opts.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(a) = array {
        s.push_str(&format!("#SBATCH --array={a}\n"));
    }
    s
}

/// The scripts of a sweep of `n_train` train cells followed by `n_merge` merge cells. Array
/// task ids start at 0 in each array (ids must stay below MaxArraySize); each array adds its
/// offset to reach the cell's index.
pub fn plan(
    root: &Path,
    workdir: &Path,
    n_train: usize,
    n_merge: usize,
    max_array: usize,
    opts: &SlurmOptions,
) -> Vec<Job> {
    let exe = quote(&opts.exe.display().to_string());
    let dir = quote(&root.display().to_string());
    let logs = root.join("slurm");
    let cd = format!("cd {}\n", quote(&workdir.display().to_string()));
    let run_cell = |index: &str| {
        format!(
            "exec {exe} sweep run-cell {dir} {index} --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\" --log\n",
            opts.cpus_per_task
        )
    };
    let out = |name: &str| logs.join(name).display().to_string();
    let mut jobs = vec![Job {
        name: "base.sh".into(),
        script: header(opts, "keel-sweep-base", &out("base-%j.out"), None) + &cd + &run_cell("--base"),
        after: vec![],
    }];
    let arrays = |kind: &str, start: usize, n: usize, after: Vec<usize>, jobs: &mut Vec<Job>| -> Vec<usize> {
        let mut ids = Vec::new();
        for offset in (start..start + n).step_by(max_array.max(1)) {
            let len = (start + n - offset).min(max_array.max(1));
            let limit = if opts.max_parallel > 0 { format!("%{}", opts.max_parallel) } else { String::new() };
            let name = format!("{kind}-{offset}");
            let script = header(
                opts,
                &format!("keel-sweep-{kind}"),
                &out(&format!("{name}-%A_%a.out")),
                Some(format!("0-{}{limit}", len - 1)),
            ) + &cd
                + &run_cell(&format!("--index \"$((SLURM_ARRAY_TASK_ID + {offset}))\""));
            ids.push(jobs.len());
            jobs.push(Job { name: format!("{name}.sh"), script, after: after.clone() });
        }
        ids
    };
    let train = arrays("train", 0, n_train, vec![0], &mut jobs);
    let mut all = train.clone();
    if n_merge > 0 {
        all.extend(arrays("merge", n_train, n_merge, train, &mut jobs));
    }
    all.push(0);
    let report =
        header(opts, "keel-sweep-report", &out("report-%j.out"), None) + &cd + &format!("exec {exe} report {dir}\n");
    jobs.push(Job { name: "report.sh".into(), script: report, after: all });
    jobs
}

/// Writes the sweep directory and the scripts under `SWEEP_DIR/slurm/`, submits them in order
/// with their dependencies, records the job ids in `slurm/jobs.json`, and returns.
pub fn submit(sweep: &Sweep, out: &Path, opts: &SlurmOptions) -> Result<Submitted> {
    ensure!(opts.cpus_per_task > 0, "--cpus-per-task must be positive");
    let dir = SweepDir::new(&std::path::absolute(out)?);
    prepare(sweep, &dir)?;
    let n_train = sweep.cells.iter().filter(|c| c.info.kind == "train").count();
    let n_merge = sweep.cells.len() - n_train;
    let workdir = std::env::current_dir()?;
    let jobs = plan(&dir.root, &workdir, n_train, n_merge, max_array_size(&opts.scontrol), opts);
    let slurm_dir = dir.root.join("slurm");
    std::fs::create_dir_all(&slurm_dir).with_context(|| format!("cannot create {}", slurm_dir.display()))?;
    let mut ids: Vec<String> = Vec::new();
    let mut submitted = Vec::new();
    for job in &jobs {
        let path = slurm_dir.join(&job.name);
        std::fs::write(&path, &job.script).with_context(|| format!("cannot write {}", path.display()))?;
        let mut cmd = Command::new(&opts.sbatch);
        cmd.arg("--parsable");
        if !job.after.is_empty() {
            let deps: Vec<&str> = job.after.iter().map(|&i| ids[i].as_str()).collect();
            cmd.arg(format!("--dependency=afterany:{}", deps.join(":")));
        }
        let output = cmd.arg(&path).output().with_context(|| {
            format!("cannot run {} (is Slurm installed here? submit from a login node)", opts.sbatch.display())
        })?;
        if !output.status.success() {
            bail!(
                "sbatch refused {} ({}): {}; jobs submitted before it: {}",
                path.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                if ids.is_empty() { "none".into() } else { ids.join(", ") }
            );
        }
        // --parsable prints "jobid" or "jobid;cluster".
        let text = String::from_utf8_lossy(&output.stdout);
        let id = text.trim().split(';').next().unwrap_or_default().to_string();
        ensure!(!id.is_empty(), "sbatch printed no job id for {}", path.display());
        ids.push(id.clone());
        submitted.push((path, id));
    }
    let record: Vec<_> = submitted.iter().map(|(p, id)| json!({"script": p, "job_id": id})).collect();
    write_json(&slurm_dir.join("jobs.json"), &record)?;
    Ok(Submitted { jobs: submitted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SlurmOptions {
        SlurmOptions {
            exe: "/opt/keel".into(),
            partition: Some("cpu".into()),
            cpus_per_task: 4,
            time: Some("02:00:00".into()),
            max_parallel: 3,
            sbatch: "sbatch".into(),
            scontrol: "scontrol".into(),
        }
    }

    #[test]
    fn one_array_task_per_cell_and_the_report_after_all() {
        let jobs = plan(Path::new("/s/dir"), Path::new("/w"), 5, 2, 1001, &opts());
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["base.sh", "train-0.sh", "merge-5.sh", "report.sh"]);
        let train = &jobs[1].script;
        for line in [
            "#SBATCH --array=0-4%3",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --partition=cpu",
            "#SBATCH --time=02:00:00",
            "cd '/w'",
        ] {
            assert!(train.contains(line), "{line} missing in\n{train}");
        }
        assert!(
            train.contains("exec '/opt/keel' sweep run-cell '/s/dir' --index \"$((SLURM_ARRAY_TASK_ID + 0))\""),
            "{train}"
        );
        assert!(jobs[2].script.contains("--array=0-1%3") && jobs[2].script.contains("SLURM_ARRAY_TASK_ID + 5"));
        assert_eq!(jobs[1].after, vec![0]);
        assert_eq!(jobs[2].after, vec![1]);
        assert_eq!(jobs[3].after, vec![1, 2, 0]);
        assert!(jobs[3].script.contains("exec '/opt/keel' report '/s/dir'"));
        assert!(jobs[0].script.contains("--base --threads"));
    }

    #[test]
    fn arrays_above_max_array_size_are_split() {
        let jobs = plan(Path::new("/s"), Path::new("/w"), 2500, 0, 1000, &opts());
        let arrays: Vec<(&str, bool)> = jobs[1..4]
            .iter()
            .map(|j| {
                (
                    j.name.as_str(),
                    j.script.contains(&format!("--array=0-{}%3", if j.name == "train-2000.sh" { 499 } else { 999 })),
                )
            })
            .collect();
        assert_eq!(arrays, [("train-0.sh", true), ("train-1000.sh", true), ("train-2000.sh", true)]);
        assert!(jobs[3].script.contains("SLURM_ARRAY_TASK_ID + 2000"));
        assert_eq!(jobs[4].after, vec![1, 2, 3, 0]);
    }

    #[test]
    fn max_array_size_falls_back_to_slurms_default() {
        assert_eq!(max_array_size(Path::new("/no/such/scontrol")), 1001);
    }
}
