//! `keel analyze`: code length (mean per-token NLL) of responses under a model, ΔL against the
//! base model on domain and general data, and the token-probability report.

use anyhow::{ensure, Context, Result};
use clap::Args;
use keel_data::dataset::{Format, Target};
use keel_eval::codelength::{
    domain_examples, general_examples, probability_report, token_losses, tokenize, written_general_examples, ROWS,
};
use keel_infer::pretrained::Pretrained;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// The base model θ₀ for ΔL (same tokenizer).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Domain responses: a data file (for medcalc, its held-out part is measured).
    #[arg(long)]
    data: PathBuf,
    /// The data file's format (as data.format of a run config).
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Which responses are measured: chain-of-thought or the label alone (as data.target).
    #[arg(long, default_value = "cot", value_parser = parse_target)]
    target: Target,
    /// Examples measured (0: all).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// General responses measured under both models (needs --base): the base model's greedy
    /// answers to this many IFEval prompts, cached (0: skip the general measure); with
    /// --general-data, the first this many of that file's responses (0: all of them).
    #[arg(long, default_value_t = 0)]
    general: usize,
    /// Held-out general responses written by people (any training data format, told by its
    /// fields; the assistant turns are measured) instead of the base model's own answers: the
    /// base's answers favour a model that sharpens on its own habits, references do not.
    #[arg(long)]
    general_data: Option<PathBuf>,
    /// Where the benchmark data lives (IFEval's prompts for --general; $KEEL_DATA, else ./data).
    #[arg(long, default_value_os_t = keel_data::default_data_dir())]
    data_dir: PathBuf,
    /// Output directory: analysis.json, and the base's general responses cached beside it.
    #[arg(long, default_value = "analysis")]
    out: PathBuf,
    /// Hardest tokens listed.
    #[arg(long, default_value_t = 20)]
    hardest: usize,
}

fn parse_format(s: &str) -> Result<Format, String> {
    serde_json::from_value(json!(s)).map_err(|_| {
        format!("unknown format \"{s}\" (messages, prompt_completion, alpaca, sharegpt, gsm8k, medcalc, esci)")
    })
}

fn parse_target(s: &str) -> Result<Target, String> {
    serde_json::from_value(json!(s)).map_err(|_| format!("unknown target \"{s}\" (cot, label)"))
}

pub fn run_analyze(a: AnalyzeArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let model = a.model.load()?;
    let load_base = |path: &PathBuf| -> Result<Pretrained> {
        let mut base = Pretrained::load(path)?;
        if let Some(spec) = &a.model.chat_template {
            base.set_chat_template(spec)?;
        }
        Ok(base)
    };
    let base = a.base.as_ref().map(load_base).transpose()?;
    ensure!(
        base.is_some() || (a.general == 0 && a.general_data.is_none()),
        "--general and --general-data measure ΔL against the base model: pass --base too"
    );
    if let Some(b) = &base {
        ensure!(
            b.tokenizer.vocab_size() == model.tokenizer.vocab_size(),
            "the base model's tokenizer differs from the model's"
        );
    }
    let examples = domain_examples(&a.data, a.format, a.target, a.limit)?;
    let domain = tokenize(&model, &examples)?;
    let rows = ROWS;
    let tl = token_losses(&model.model, &domain, rows)?;
    let report = probability_report(&tl, &domain, &model.tokenizer, a.hardest)?;
    let mut out = json!({"model": a.model.model, "base": a.base, "data": a.data, "examples": domain.len(), "domain": {"model": report}});
    println!(
        "domain: {} tokens, mean NLL {:.4} nats/token, median token probability {:.3}",
        report.tokens, report.mean_nll, report.median_probability
    );
    if let Some(b) = &base {
        let bl = token_losses(&b.model, &domain, rows)?;
        let delta = tl.mean() - bl.mean();
        out["domain"]["base_mean_nll"] = json!(bl.mean());
        out["domain"]["delta_l"] = json!(delta);
        out["domain"]["base"] = json!(probability_report(&bl, &domain, &b.tokenizer, a.hardest)?);
        println!(
            "domain: ΔL = {delta:+.4} nats/token (model {:.4}, base {:.4}; negative is improvement)",
            tl.mean(),
            bl.mean()
        );
        let general_source = match &a.general_data {
            Some(path) => Some((written_general_examples(path, a.general)?, json!(path))),
            None if a.general > 0 => {
                let cache = a.out.join("general_responses.json");
                let examples = general_examples(b, a.general, &a.data_dir, &cache, 128)?;
                Some((examples, json!("the base model's answers to IFEval prompts")))
            }
            None => None,
        };
        if let Some((examples, responses)) = general_source {
            let general = tokenize(&model, &examples)?;
            let (gm, gb) = (token_losses(&model.model, &general, rows)?, token_losses(&b.model, &general, rows)?);
            let dg = gm.mean() - gb.mean();
            out["general"] = json!({"responses": responses, "examples": general.len(), "model_mean_nll": gm.mean(),
                "base_mean_nll": gb.mean(), "delta_l": dg});
            println!(
                "general: ΔL = {dg:+.4} nats/token (model {:.4}, base {:.4}; positive is degradation)",
                gm.mean(),
                gb.mean()
            );
        }
    }
    let path = a.out.join("analysis.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
