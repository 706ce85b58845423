//! `keel`: fine-tune Llama-family models on a domain while keeping their general abilities.

mod analyze;
mod bench;
mod eval;
mod infer;
mod sweep;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about,
    long_about = "keel fine-tunes Llama-family language models on a domain \
dataset while keeping their general abilities, and measures both.\n\nThis build provides the training \
engine, generation and conversion; see the README for what is implemented so far."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune a model with TALR or a baseline objective (see configs/).
    Train(train::TrainArgs),
    /// Inspect training data as a run would see it.
    #[command(subcommand)]
    Data(train::DataCommand),
    /// Score a model on multiple-choice benchmarks (ARC, BoolQ) by log-likelihood.
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
    /// Convert a GGUF model into a Hugging Face directory.
    Convert(infer::ConvertArgs),
    /// Run a grid of fine-tuning runs (methods × learning rates × seeds) against the base model.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run_train(a),
        Command::Data(cmd) => train::run_data(cmd),
        Command::Merge(a) => train::run_merge(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Analyze(a) => analyze::run_analyze(a),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Generate(a) => infer::run_generate(a),
        Command::Chat(a) => infer::run_chat(a),
        Command::Convert(a) => infer::run_convert(a),
        Command::Sweep(cmd) => sweep::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
