//! `keel data`: fetch the data sets keel knows, and inspect a run's training data.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keel_data::fetch::{Manifest, Source};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download data sets (all, or those named) from their public sources at pinned revisions,
    /// checking each file's sha256 before it is written; files already there are kept.
    Fetch(FetchArgs),
    /// Show how a run's data is tokenized: counts of kept and skipped examples, and examples
    /// with the supervised (loss) tokens between [ and ].
    Inspect(crate::train::InspectArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// Data sets to fetch (default: all): gsm8k, medcalc_bench, ifeval, humaneval, arc, boolq, mmlu.
    names: Vec<String>,
    /// Where to write them (default: $KEEL_DATA, else ./data).
    #[arg(long, default_value_os_t = keel_data::default_data_dir())]
    data_dir: PathBuf,
    /// Read from an offline copy with the data directory's layout instead: a directory
    /// (../shared/data) or a URL (URL/<set>/<file>). Checksums are verified all the same.
    #[arg(long, value_name = "DIR|URL")]
    mirror: Option<String>,
    /// List the data sets, their files, sizes, licenses and sources, and fetch nothing.
    #[arg(long)]
    list: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch(a) => run_fetch(a),
        DataCommand::Inspect(a) => crate::train::run_inspect(a),
    }
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let manifest = Manifest::builtin()?;
    let sets = manifest.select(&a.names)?;
    if a.list {
        print!("{}", keel_data::fetch::list(&sets));
        return Ok(());
    }
    let source = a.mirror.as_deref().map_or(Source::Upstream, Source::mirror);
    let done = keel_data::fetch::fetch(&sets, &a.data_dir, &source)
        .with_context(|| format!("fetching into {}", a.data_dir.display()))?;
    eprintln!("fetch: {} ready: {} written, {} already there", a.data_dir.display(), done.written, done.present);
    Ok(())
}
