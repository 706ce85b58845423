//! `keel sweep`: the trade-off study as one command. A sweep file crosses methods with
//! learning rates, seeds or any other run-config key; every cell is trained, scored on the same
//! domain and general items as the base model, and its code length ΔL measured against the
//! base. Cells run locally (`keel sweep run`, N at a time, each in its own process) or as a
//! Slurm job array (`keel sweep submit --slurm`), and land in a sweep directory laid out as
//! `docs/sweep-layout.md` says, which `keel report` reads.
//!
//! # The sweep file
//!
//! ```toml
//! # The run config every cell starts from: a `keel train` config's path, or an inline [base].
//! base = "configs/smollm2-gsm8k-talr.toml"
//! # false: delete a done cell's run/final (a merge's source keeps it). Default: true.
//! keep_weights = true
//!
//! # Crossed values of any run-config key: 2 × 2 = 4 points per method.
//! [axes]
//! train.lr = [1e-5, 3e-5]
//! train.seed = [0, 1]
//!
//! # Linked overrides: each applies together, and only to its method's cells.
//! [[methods]]
//! name = "sft"
//! train.objective = "ce"
//!
//! [[methods]]
//! name = "talr"
//! train.objective = "talr"
//! talr.floor = 0.01
//!
//! # A method can run at some of the axes' values only (a baseline at the largest LR):
//! [[methods]]
//! name = "l2"
//! train.l2_init = 0.01
//! axes = { "train.lr" = [3e-5] }
//!
//! # Post-hoc: each finished sft cell averaged with the base at each α; nothing trained.
//! # (Also writable at the top as wise_ft = { from = "sft", alpha = [...] }.)
//! [wise_ft]
//! from = "sft"
//! alpha = [0.25, 0.5, 0.75]
//!
//! # What the base and every cell are scored on: the same seeded items for all.
//! [eval]
//! domain = ["domain:gsm8k"]
//! general = ["arc_easy", "boolq"]
//! limit = 50          # or { default = 50, ifeval = 16 }: a number per task
//! seed = 0
//! batch_rows = 8        # sequences per forward pass
//! max_new_tokens = 0    # generation budget (0: each task's own); also a table by task
//! data_dir = "data"    # default: $KEEL_DATA, else ./data (`keel data fetch` fills it)
//!
//! # Code length ΔL against the base: the first 50 domain responses (default: the base
//! # config's data), and the base's own answers to 16 IFEval prompts as general responses.
//! [analyze]
//! domain_limit = 50
//! general_limit = 16
//! max_new_tokens = 128
//! # general_data = "general.jsonl"   # general responses written by people instead (any
//! #                                  # training format; general_limit: its first N, 0 all)
//! ```
//!
//! Keys are strict: an unknown key, an empty axis, or an override of a key the run config does
//! not have is an error naming the file and the key. Relative paths mean what they mean in the
//! directory the sweep is started from, as for `keel train`.
//!
//! # Cells
//!
//! A cell's id is a fingerprint of its resolved run config (where it writes and its thread
//! count left out) and method name; a merge's, of its source cell and α. Running a sweep again
//! runs only cells not done: failed ones, unfinished ones (training resumes from the last
//! checkpoint) and new ones; a changed sweep file may add cells. A directory made under
//! another base model, domain data, `[eval]` or `[analyze]` is refused, naming the key that
//! differs.

#![warn(missing_docs)]

pub mod cell;
pub mod estimate;
pub mod layout;
pub mod local;
pub mod slurm;
pub mod spec;

pub use layout::{State, Status, SweepDir};
pub use spec::{CellInfo, Sweep};

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// `keel sweep run-cell`: runs the base (`index` None) or one cell. With `log`, the work runs in
/// a child process of `exe` whose output goes to the unit's log.txt (how a Slurm task keeps a
/// log per cell); otherwise here, stopping if the process that started it dies, so that a
/// killed `keel sweep run` leaves no cell running behind it.
pub fn run_cell(exe: &Path, root: &Path, index: Option<usize>, threads: usize, log: bool) -> Result<()> {
    if log {
        let dir = SweepDir::new(&std::path::absolute(root)?);
        let id = match index {
            Some(i) => {
                Some(dir.cells()?.get(i).map(|c| c.id.clone()).with_context(|| format!("--index {i}: no such cell"))?)
            }
            None => None,
        };
        let status = local::spawn_unit(exe, &dir.root, &dir.unit(id.as_deref()), index, threads)?.wait()?;
        anyhow::ensure!(
            status.success(),
            "the cell failed ({status}); see {}",
            dir.unit(id.as_deref()).join("log.txt").display()
        );
        return Ok(());
    }
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if std::os::unix::process::parent_id() != parent {
            eprintln!("the process that started this cell is gone; stopping (the next run resumes it)");
            std::process::exit(3);
        }
    });
    cell::run_unit(root, index, threads)
}
