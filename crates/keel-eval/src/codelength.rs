//! The paper's own measure: code length. The mean per-token negative log-likelihood of
//! reference responses under a model, its difference ΔL against the base model (ΔL > 0 on
//! general data is degradation, ΔL < 0 on domain data improvement), and a token-probability
//! report (histogram, hardest tokens with their context).

use anyhow::{ensure, Context, Result};
use keel_data::batching::{collate, Row};
use keel_data::chat::Message;
use keel_data::dataset::{read_examples, Example, Fields, Format, Target};
use keel_data::mask::{tokenize_conversation, TokenizedExample};
use keel_data::medcalc::read_medcalc;
use keel_data::tokenizer::Tokenizer;
use keel_infer::generate::{generate, GenOptions};
use keel_infer::pretrained::Pretrained;
use keel_model::{Transformer, Workspace};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Sequences per forward pass when measuring code length.
pub const ROWS: usize = 4;

/// A model's code length on one set of responses: what `keel sweep` records per cell.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeLength {
    /// Mean per-token negative log-likelihood in nats.
    pub code_length: f64,
    /// Supervised tokens measured.
    pub n_tokens: usize,
}

/// The code length of `examples` under `model`.
pub fn code_length(model: &Transformer, examples: &[TokenizedExample]) -> Result<CodeLength> {
    let tl = token_losses(model, examples, ROWS)?;
    Ok(CodeLength { code_length: tl.mean(), n_tokens: tl.losses.len() })
}

/// General responses written by people: the assistant turns of a data file in any training format
/// (told by its fields), the first `limit` (0: all), for `--general-data` and a sweep's
/// `analyze.general_data`.
pub fn written_general_examples(path: &Path, limit: usize) -> Result<Vec<Example>> {
    domain_examples(path, Format::detect(path)?, Target::Cot, limit)
}

/// The domain responses of a data file, the first `limit` (0: all); for medcalc its held-out
/// part, so that ΔL is measured on answers the model was not trained on.
pub fn domain_examples(path: &Path, format: Format, target: Target, limit: usize) -> Result<Vec<Example>> {
    let mut examples = if format == Format::Medcalc {
        read_medcalc(path)?
            .into_iter()
            .filter(|r| r.held_out)
            .map(|r| Example { messages: r.messages(target), source: r.source.clone() })
            .collect()
    } else {
        read_examples(path, format, target, &Fields::default())?
    };
    if limit > 0 {
        examples.truncate(limit);
    }
    Ok(examples)
}

/// Tokenizes conversations with `pre`'s chat template, keeping those with an assistant turn.
pub fn tokenize(pre: &Pretrained, examples: &[Example]) -> Result<Vec<TokenizedExample>> {
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

/// The base model's greedy answers (at most `max_new_tokens` each) to the first `n` IFEval
/// prompts of `data_dir`: the general responses of ΔL. Generated once and cached in `cache`.
pub fn general_examples(
    base: &Pretrained,
    n: usize,
    data_dir: &Path,
    cache: &Path,
    max_new_tokens: usize,
) -> Result<Vec<Example>> {
    if let Some(cached) = read_general_cache(cache, n)? {
        return Ok(cached);
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
                .with_context(|| format!("malformed IFEval line in {}", path.display()))
        })
        .collect::<Result<_>>()?;
    let template = base.chat_template.as_ref().context("the base model has no chat template")?;
    let mut pairs = Vec::new();
    for chunk in prompts.chunks(8) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| base.tokenizer.encode(&template.render(&[Message::new("user", p)], true)?, true))
            .collect::<Result<_>>()?;
        let outs = generate(base, &ids, &GenOptions { max_new_tokens, ..GenOptions::default() }, |_, _, _| {})?;
        pairs.extend(chunk.iter().cloned().zip(outs.into_iter().map(|g| g.text)));
        eprintln!("general: {}/{n} base responses", pairs.len());
    }
    std::fs::write(cache, serde_json::to_string(&pairs)?)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    Ok(as_examples(pairs, cache))
}

/// The cached general responses of [`general_examples`], when `cache` holds exactly `n`.
pub fn read_general_cache(cache: &Path, n: usize) -> Result<Option<Vec<Example>>> {
    let Ok(text) = std::fs::read_to_string(cache) else { return Ok(None) };
    let cached: Vec<(String, String)> =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", cache.display()))?;
    Ok((cached.len() == n).then(|| as_examples(cached, cache)))
}

fn as_examples(pairs: Vec<(String, String)>, cache: &Path) -> Vec<Example> {
    pairs
        .into_iter()
        .map(|(p, r)| Example {
            messages: vec![Message::new("user", &p), Message::new("assistant", &r)],
            source: cache.display().to_string(),
        })
        .collect()
}

/// Per supervised token: (example, position in the example, −log p).
pub struct TokenLosses {
    /// One entry per supervised token, in example order.
    pub losses: Vec<(usize, usize, f64)>,
}

impl TokenLosses {
    /// Mean per-token code length in nats.
    pub fn mean(&self) -> f64 {
        self.losses.iter().map(|l| l.2).sum::<f64>() / self.losses.len().max(1) as f64
    }
}

/// −log p of every supervised token of `examples` under `model`.
pub fn token_losses(model: &Transformer, examples: &[TokenizedExample], rows: usize) -> Result<TokenLosses> {
    ensure!(!examples.is_empty(), "no examples to measure");
    let max_len = examples.iter().map(|e| e.len()).max().unwrap_or(1);
    let mut ws = Workspace::new(&model.config, rows, max_len, true)?;
    ws.logits_at_targets_only = true;
    let mut losses = Vec::new();
    let order: Vec<usize> = (0..examples.len()).collect();
    for chunk in order.chunks(rows) {
        let batch_rows: Vec<Row> = chunk.iter().map(|&i| vec![i]).collect();
        let mb = collate(&batch_rows, examples, 0);
        let l = model.forward(&mut ws, &mb.batch)?;
        for (r, &ex) in chunk.iter().enumerate() {
            for t in 0..examples[ex].len() {
                let pos = r * mb.batch.seq + t;
                if mb.example_of[pos] != usize::MAX {
                    // Position t predicts token t + 1.
                    losses.push((ex, t + 1, l[pos] as f64));
                }
            }
        }
    }
    Ok(TokenLosses { losses })
}

/// The token-probability report of one model on one dataset.
#[derive(Serialize)]
pub struct ProbabilityReport {
    /// Supervised tokens measured.
    pub tokens: usize,
    /// Mean −log p per token, in nats (the code length per token).
    pub mean_nll: f64,
    /// Median token probability.
    pub median_probability: f64,
    /// Counts of token probabilities in [0, 0.1), [0.1, 0.2), …, [0.9, 1].
    pub histogram: [usize; 10],
    /// The least probable tokens, hardest first.
    pub hardest: Vec<HardToken>,
}

/// One low-probability target token, with where it occurs.
#[derive(Serialize)]
pub struct HardToken {
    /// Its probability under the model.
    pub probability: f64,
    /// The token's text.
    pub token: String,
    /// Up to 12 tokens before it.
    pub context: String,
    /// Index of its example among the measured ones.
    pub example: usize,
}

/// The token-probability report of `tl`: histogram, median, mean NLL and the `hardest` least
/// probable tokens with their context (decoded with `tok`).
pub fn probability_report(
    tl: &TokenLosses,
    examples: &[TokenizedExample],
    tok: &Tokenizer,
    hardest: usize,
) -> Result<ProbabilityReport> {
    let mut histogram = [0usize; 10];
    let mut probs: Vec<f64> = tl.losses.iter().map(|l| (-l.2).exp()).collect();
    probs.iter().for_each(|&p| histogram[((p * 10.0) as usize).min(9)] += 1);
    let mut idx: Vec<usize> = (0..tl.losses.len()).collect();
    idx.sort_by(|&a, &b| tl.losses[b].2.total_cmp(&tl.losses[a].2));
    let hard = idx
        .into_iter()
        .take(hardest)
        .map(|i| {
            let (ex, pos, loss) = tl.losses[i];
            let ids = &examples[ex].ids;
            Ok(HardToken {
                probability: (-loss).exp(),
                token: tok.decode(&ids[pos..pos + 1], false)?,
                context: tok.decode(&ids[pos.saturating_sub(12)..pos], false)?,
                example: ex,
            })
        })
        .collect::<Result<_>>()?;
    probs.sort_by(f64::total_cmp);
    Ok(ProbabilityReport {
        tokens: probs.len(),
        mean_nll: tl.mean(),
        median_probability: probs.get(probs.len() / 2).copied().unwrap_or(0.0),
        histogram,
        hardest: hard,
    })
}
