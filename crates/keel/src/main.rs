//! `keel`: fine-tune Llama-family models on a domain while keeping their general abilities.

mod analyze;
mod bench;
mod data;
mod eval;
mod infer;
mod report;
mod sweep;
mod train;

use clap::{Parser, Subcommand};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about,
    long_about = "keel fine-tunes Llama-family language models on a domain dataset while keeping \
their general abilities, and measures both: small learning rates, Token-Adaptive Loss Reweighting \
(TALR) and the baselines of Lin et al. (arXiv 2509.20758).\n\nA day with keel: `keel train` a \
model, `keel eval` it on domain and general benchmarks, `keel sweep` methods × learning rates, \
`keel report` the trade-off. Every subcommand has --help."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune a model with TALR or a baseline objective (see configs/).
    Train(train::TrainArgs),
    /// Fetch the data sets (pinned, checksummed), or inspect training data as a run would see it.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Score a model on domain and general benchmarks (suites, seeded subsets, intervals, deltas).
    Eval(eval::EvalArgs),
    /// Code length (per-token NLL) of responses, ΔL against the base model, hardest tokens.
    Analyze(analyze::AnalyzeArgs),
    /// Average a fine-tuned model with its base (WiSE-FT).
    Merge(train::MergeArgs),
    /// Measure the engine's speed and memory.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Continue a prompt (optionally as a chat turn) with the model.
    Generate(infer::GenerateArgs),
    /// Talk with the model interactively.
    Chat(infer::ChatArgs),
    /// Convert a GGUF model (or a Hub model) into a Hugging Face directory.
    Convert(infer::ConvertArgs),
    /// Write a model (base, tuned, or with a LoRA adapter merged) as a GGUF file for llama.cpp and Ollama.
    Export(infer::ExportArgs),
    /// Run a grid of fine-tuning runs (methods × learning rates × seeds) against the base model.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
    /// Report a sweep: Pareto plot, per-LR curves, tables with bootstrap intervals, a guideline.
    #[command(long_about = report::LONG_ABOUT)]
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    use_the_cpus_blas_kernels();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run_train(a),
        Command::Data(cmd) => data::run(cmd),
        Command::Merge(a) => train::run_merge(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Analyze(a) => analyze::run_analyze(a),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Generate(a) => infer::run_generate(a),
        Command::Chat(a) => infer::run_chat(a),
        Command::Convert(a) => infer::run_convert(a),
        Command::Export(a) => infer::run_export(a),
        Command::Sweep(cmd) => sweep::run(cmd),
        Command::Report(a) => report::run_report(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restarts keel with `OPENBLAS_CORETYPE` set when OpenBLAS did not recognize this CPU and fell
/// back to generic kernels (see `keel_kernels::gemm::better_blas_core`); the variable is read
/// only when the library loads. A user's own `OPENBLAS_CORETYPE` is left alone.
fn use_the_cpus_blas_kernels() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    let Some(core) = keel_kernels::gemm::better_blas_core() else { return };
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("OPENBLAS_CORETYPE", core).exec();
    eprintln!("keel: OpenBLAS chose its generic kernels; restarting with its {core} ones failed ({err}), so this run is slower");
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;
    use std::collections::BTreeMap;

    /// Names that would mean one concept twice. A flag's name may be any one of its group, but
    /// across keel only one of them may be used.
    const CONCEPTS: &[&[&str]] = &[
        &["limit", "items", "num-items", "max-items", "n"],
        &["max-new-tokens", "new-tokens", "max-tokens", "tokens"],
        &["batch-rows", "batch", "batch-size", "micro-batch-size", "rows"],
        &["out", "output", "out-dir", "output-dir", "dest"],
        &["threads", "num-threads", "cpus"],
        &["json", "format-json", "as-json"],
        &["data-dir", "data-root", "datasets"],
        &["seq-len", "seq", "max-seq-len", "sequence-length"],
        &["repeat", "repeats", "runs", "iterations"],
        &["config", "run-config", "cfg"],
    ];

    /// Every (subcommand path, long flag, help) of the command tree.
    fn flags() -> Vec<(String, String, String)> {
        fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, String, String)>) {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let help = arg.get_help().or(arg.get_long_help()).map(|h| h.to_string()).unwrap_or_default();
                    out.push((path.clone(), long.to_string(), help));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), "keel".into(), &mut out);
        out
    }

    #[test]
    fn one_name_per_concept_across_every_subcommand() {
        let mut used: BTreeMap<usize, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (path, long, _) in flags() {
            if let Some(group) = CONCEPTS.iter().position(|g| g.contains(&long.as_str())) {
                used.entry(group).or_default().entry(long).or_default().push(path);
            }
        }
        for (group, names) in used {
            assert!(names.len() == 1, "one concept ({:?}) under several names: {names:?}", CONCEPTS[group]);
        }
    }

    #[test]
    fn every_flag_says_what_it_does_and_out_is_a_directory() {
        let mut missing = Vec::new();
        for (path, long, help) in flags() {
            if ["help", "version"].contains(&long.as_str()) {
                continue;
            }
            if help.trim().is_empty() {
                missing.push(format!("{path} --{long}"));
            }
            if long == "out" {
                assert!(help.to_lowercase().contains("directory"), "{path} --out must name a directory: {help}");
            }
        }
        assert!(missing.is_empty(), "flags without help text: {missing:?}");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
