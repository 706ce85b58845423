//! `keel analyze`: code length (mean per-token NLL) of responses under a model, ΔL against the
//! base model on domain and general data, and the token-probability report.

use anyhow::{ensure, Context, Result};
use clap::Args;
use keel_data::chat::Message;
use keel_data::dataset::{read_examples, Example, Fields, Format, Target};
use keel_data::mask::{tokenize_conversation, TokenizedExample};
use keel_data::medcalc::read_medcalc;
use keel_eval::codelength::{probability_report, token_losses};
use keel_infer::generate::{generate, GenOptions};
use keel_infer::pretrained::Pretrained;
use serde_json::json;
use std::path::{Path, PathBuf};

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
    /// General prompts (IFEval's) answered greedily by the base model, cached, and measured
    /// under both models (0: skip the general measure; needs --base).
    #[arg(long, default_value_t = 0)]
    general: usize,
    /// Where the benchmark data lives (IFEval's prompts for --general).
    #[arg(long, default_value = "../shared/data")]
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

fn tokenize(pre: &Pretrained, examples: &[Example]) -> Result<Vec<TokenizedExample>> {
    let template = pre.chat_template.as_ref().context("the model has no chat template")?;
    let mut out = Vec::new();
    for ex in examples {
        if let Some(t) =
            tokenize_conversation(&pre.tokenizer, template, &ex.messages).map_err(|e| e.context(ex.source.clone()))?
        {
            out.push(t);
        }
    }
    ensure!(!out.is_empty(), "no example has an assistant response to measure");
    Ok(out)
}

/// The base model's greedy answers to the first `n` IFEval prompts, generated once and cached.
fn general_examples(base: &Pretrained, n: usize, data_dir: &Path, cache: &Path) -> Result<Vec<Example>> {
    if let Ok(text) = std::fs::read_to_string(cache) {
        let cached: Vec<(String, String)> =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", cache.display()))?;
        if cached.len() == n {
            return Ok(cached
                .into_iter()
                .map(|(p, r)| Example {
                    messages: vec![Message::new("user", &p), Message::new("assistant", &r)],
                    source: cache.display().to_string(),
                })
                .collect());
        }
    }
    let path = data_dir.join("ifeval/input_data.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (the general prompts)", path.display()))?;
    let prompts: Vec<String> = text
        .lines()
        .take(n)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["prompt"].as_str().map(String::from))
                .context("malformed IFEval line")
        })
        .collect::<Result<_>>()?;
    let template = base.chat_template.as_ref().context("the base model has no chat template")?;
    let mut pairs = Vec::new();
    for chunk in prompts.chunks(8) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| base.tokenizer.encode(&template.render(&[Message::new("user", p)], true)?, true))
            .collect::<Result<_>>()?;
        let outs = generate(base, &ids, &GenOptions { max_new_tokens: 128, ..GenOptions::default() }, |_, _, _| {})?;
        pairs.extend(chunk.iter().cloned().zip(outs.into_iter().map(|g| g.text)));
        eprintln!("general: {}/{n} base responses", pairs.len());
    }
    std::fs::write(cache, serde_json::to_string(&pairs)?)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    general_examples(base, n, data_dir, cache)
}

pub fn run_analyze(a: AnalyzeArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let model = a.model.load()?;
    let base = a.base.as_ref().map(|b| Pretrained::load(b)).transpose()?;
    if let Some(b) = &base {
        ensure!(
            b.tokenizer.vocab_size() == model.tokenizer.vocab_size(),
            "the base model's tokenizer differs from the model's"
        );
    }
    let mut examples = if a.format == Format::Medcalc {
        read_medcalc(&a.data)?
            .into_iter()
            .filter(|r| r.held_out)
            .map(|r| Example { messages: r.messages(a.target), source: r.source.clone() })
            .collect()
    } else {
        read_examples(&a.data, a.format, a.target, &Fields::default())?
    };
    if a.limit > 0 {
        examples.truncate(a.limit);
    }
    let domain = tokenize(&model, &examples)?;
    let rows = 4;
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
        if a.general > 0 {
            let cache = a.out.join("general_responses.json");
            let general = tokenize(&model, &general_examples(b, a.general, &a.data_dir, &cache)?)?;
            let (gm, gb) = (token_losses(&model.model, &general, rows)?, token_losses(&b.model, &general, rows)?);
            let dg = gm.mean() - gb.mean();
            out["general"] = json!({"examples": general.len(), "model_mean_nll": gm.mean(), "base_mean_nll": gb.mean(), "delta_l": dg});
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
