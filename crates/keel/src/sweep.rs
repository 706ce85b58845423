//! `keel sweep`: the command-line face of `keel_sweep`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use keel_sweep::slurm::SlurmOptions;
use keel_sweep::Sweep;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SweepCommand {
    /// Run every cell not done yet (base first), N at a time; exits non-zero naming failed cells.
    Run(RunArgs),
    /// Print a table of the cells and their states.
    Status {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Submit the sweep as Slurm jobs (base, job arrays of cells, then `keel report`) and return.
    Submit(SubmitArgs),
    /// Run one cell (or the base) of a sweep directory: what `run` and the Slurm jobs call.
    RunCell(RunCellArgs),
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Args)]
pub struct RunArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// The sweep directory (default: sweeps/<file stem>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cells run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads in all, split between the jobs (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// List the cells with a cost estimate and run nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// The sweep directory, on a filesystem the nodes share (default: sweeps/<file stem>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Submit to Slurm (the only scheduler so far).
    #[arg(long, required = true)]
    slurm: bool,
    /// The Slurm partition of every job (default: the cluster's default partition).
    #[arg(long)]
    partition: Option<String>,
    /// CPUs of each job, and each cell's threads.
    #[arg(long, default_value_t = 2)]
    cpus_per_task: usize,
    /// Time limit of each job (Slurm's format, e.g. 04:00:00).
    #[arg(long)]
    time: Option<String>,
    /// At most this many cells at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_parallel: usize,
}

#[derive(Args)]
pub struct RunCellArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// The cell's index in sweep.json (the Slurm array index).
    #[arg(long, required_unless_present = "base", conflicts_with = "base")]
    index: Option<usize>,
    /// Evaluate the base model instead of a cell.
    #[arg(long)]
    base: bool,
    /// Worker threads of this cell.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run in a child process whose output goes to the cell's log.txt.
    #[arg(long)]
    log: bool,
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the keel binary's own path")
}

pub fn run(cmd: SweepCommand) -> Result<()> {
    match cmd {
        SweepCommand::Run(a) => {
            let sweep = Sweep::load(&a.file)?;
            let out = a.out.unwrap_or_else(|| keel_sweep::local::default_out(&a.file));
            let threads = a.threads.unwrap_or_else(default_threads);
            if a.dry_run {
                print!("{}", keel_sweep::estimate::dry_run(&sweep, &out, a.jobs, threads)?);
                return Ok(());
            }
            let opts = keel_sweep::local::LocalOptions { exe: exe()?, jobs: a.jobs, threads };
            let failed = keel_sweep::local::run(&sweep, &out, &opts)?;
            if !failed.is_empty() {
                bail!(
                    "{} of {} cells failed (see `keel sweep status {}`):\n  {}",
                    failed.len(),
                    sweep.cells.len(),
                    out.display(),
                    failed.join("\n  ")
                );
            }
            eprintln!("sweep: all {} cells done in {}", sweep.cells.len(), out.display());
            Ok(())
        }
        SweepCommand::Status { dir } => {
            print!("{}", keel_sweep::local::status_table(&dir)?);
            Ok(())
        }
        SweepCommand::Submit(a) => {
            let sweep = Sweep::load(&a.file)?;
            let out = a.out.unwrap_or_else(|| keel_sweep::local::default_out(&a.file));
            let opts = SlurmOptions {
                exe: exe()?,
                partition: a.partition,
                cpus_per_task: a.cpus_per_task,
                time: a.time,
                max_parallel: a.max_parallel,
                sbatch: "sbatch".into(),
                scontrol: "scontrol".into(),
            };
            let submitted = keel_sweep::slurm::submit(&sweep, &out, &opts)?;
            for (script, id) in &submitted.jobs {
                println!("{id}\t{}", script.display());
            }
            eprintln!("submitted; follow with `keel sweep status {}`", out.display());
            Ok(())
        }
        SweepCommand::RunCell(a) => {
            let index = if a.base { None } else { a.index };
            keel_sweep::run_cell(&exe()?, &a.dir, index, a.threads, a.log)
        }
    }
}
