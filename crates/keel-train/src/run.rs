//! `keel train`: the fine-tuning run, from a config to a saved model.

use crate::checkpoint::{self, fingerprint, TrainState};
use crate::config::RunConfig;
use crate::l2::add_l2_to_initial;
use crate::objective::flow::flow_weights;
use crate::objective::talr::WeightStats;
use crate::objective::{token_coefficients, Objective};
use crate::schedule::learning_rate;
use crate::step::Trainer;
use anyhow::{bail, ensure, Context, Result};
use keel_data::batching::{collate, prepare, BatchPlan, Collated, Prepared, Row};
use keel_data::dataset::read_examples;
use keel_infer::pretrained::Pretrained;
use keel_kernels::adamw::AdamWHyper;
use keel_model::lora::LoraAdapter;
use keel_model::optim::AdamW;
use keel_model::{Transformer, Workspace};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct RunOptions {
    pub resume: bool,
    /// Print progress to stderr.
    pub progress: bool,
}

/// What a finished run reports.
pub struct RunSummary {
    pub steps: u64,
    /// Plain mean cross-entropy of the supervised tokens at the first and last step of this
    /// invocation (comparable across objectives, unlike each objective's own loss).
    pub first_ce: f64,
    pub last_ce: f64,
    pub final_dir: PathBuf,
}

/// A run's data, tokenized, with the fingerprint that ties checkpoints to it.
pub struct RunData {
    pub prepared: Prepared,
    pub fingerprint: String,
}

/// Loads the model and reads, tokenizes and counts the training data (also `keel data inspect`).
pub fn load_data(config: &RunConfig) -> Result<(Pretrained, RunData)> {
    let pre = Pretrained::load(&config.model.path)?;
    let template =
        pre.chat_template.as_ref().with_context(|| format!("{} has no chat template", config.model.path.display()))?;
    let d = &config.data;
    let mut examples = read_examples(&d.path, d.format, d.target, &d.fields)?;
    if d.max_examples > 0 {
        examples.truncate(d.max_examples);
    }
    let prepared = prepare(&examples, &pre.tokenizer, template, d.max_seq_len, d.truncation)?;
    let fingerprint = fingerprint(prepared.examples.iter().flat_map(|e| {
        e.ids.iter().flat_map(|i| i.to_le_bytes()).chain(e.supervised.iter().map(|&s| s as u8)).collect::<Vec<u8>>()
    }));
    Ok((pre, RunData { prepared, fingerprint }))
}

/// One supervised token of an optimizer batch: where it is, its loss, its sequence.
struct Token {
    micro: usize,
    pos: usize,
    loss: f64,
    example: usize,
}

pub fn train(config: &RunConfig, opts: &RunOptions) -> Result<RunSummary> {
    let t = &config.train;
    keel_kernels::parallel::init_threads(t.threads).map_err(anyhow::Error::msg)?;
    let run_dir = &config.output.dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    let existing = checkpoint::list(run_dir)?;
    if !opts.resume && !existing.is_empty() {
        bail!(
            "{} already holds checkpoints; pass --resume to continue that run, or choose another output.dir",
            run_dir.display()
        );
    }
    let objective = config.objective()?;
    let batch_scope = config.batch_scope()?;
    let (mut pre, data) = load_data(config)?;
    let stats = &data.prepared.stats;
    if opts.progress {
        eprintln!(
            "data: {} examples, {} used ({} supervised of {} tokens); skipped: {} without an assistant turn, {} too long ({:?} policy, max_seq_len {}), {} truncated, {} with no target left",
            stats.examples, stats.kept, stats.supervised_tokens, stats.tokens, stats.no_assistant_turn, stats.too_long_dropped,
            config.data.truncation, config.data.max_seq_len, stats.truncated, stats.no_target_after_truncation
        );
    }
    ensure!(stats.kept > 0, "no training example is left after preparation (see the counts above)");

    let config_json = serde_json::to_value(config)?;
    // What a checkpoint must agree on to resume: everything but the output section and the
    // run's length (extending a run is allowed; its schedule then follows the new length).
    let mut fp_json = config_json.clone();
    fp_json.as_object_mut().expect("object").remove("output");
    for key in ["max_steps", "epochs"] {
        fp_json["train"].as_object_mut().expect("train section").remove(key);
    }
    let config_fp = fingerprint(fp_json.to_string().into_bytes());
    write_json(
        &run_dir.join("config.json"),
        &json!({"keel_version": env!("CARGO_PKG_VERSION"), "config": config_json}),
    )?;

    let examples = &data.prepared.examples;
    let lengths: Vec<usize> = examples.iter().map(|e| e.len()).collect();
    let plan = BatchPlan {
        micro_batch_size: t.micro_batch_size,
        grad_accum: t.grad_accum,
        max_seq_len: config.data.max_seq_len,
        packing: config.data.packing,
        seed: t.seed,
    };
    let steps_per_epoch = plan.epoch(&lengths, 0).len() as u64;
    let total_steps = if t.max_steps > 0 { t.max_steps } else { t.epochs * steps_per_epoch };
    let pad_id = pre.tokenizer.eos.as_ref().map(|e| e.0).unwrap_or(0);

    let flow = if objective == Objective::Flow {
        Some(flow_example_weights(
            run_dir,
            &pre.model,
            examples,
            pad_id,
            &data.fingerprint,
            config.data.max_seq_len,
            opts.progress,
        )?)
    } else {
        None
    };
    if let Some(lc) = config.lora_config()? {
        pre.model.lora = Some(LoraAdapter::new(&pre.model.config, lc, t.seed)?);
    }
    let initial = (t.l2_init > 0.0).then(|| pre.model.trainable_params().to_vec());
    let model = &mut pre.model;
    let peak_lr = config.peak_lr();
    let hyper = AdamWHyper { lr: peak_lr, beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: t.weight_decay };
    let mut trainer = Trainer {
        workspace: Workspace::new(&model.config, t.micro_batch_size, config.data.max_seq_len, t.grad_checkpointing)?,
        grads: vec![0.0; model.num_trainable()],
        optimizer: AdamW::new(model.num_trainable(), hyper),
        max_grad_norm: t.max_grad_norm,
    };
    // Prompt and padding positions carry no loss: skip their vocabulary-wide logits.
    trainer.workspace.logits_at_targets_only = true;
    let mut state = TrainState {
        step: 0,
        tokens_seen: 0,
        config_fingerprint: config_fp.clone(),
        data_fingerprint: data.fingerprint.clone(),
        keel_version: env!("CARGO_PKG_VERSION").into(),
    };
    if opts.resume {
        let last = existing.last().with_context(|| format!("--resume: {} holds no checkpoint", run_dir.display()))?;
        state = checkpoint::load(last, model, &mut trainer.optimizer, &config_fp, &data.fingerprint)?;
        if opts.progress {
            eprintln!("resuming from {} (step {})", last.display(), state.step);
        }
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, state.step)?;

    let started = Instant::now();
    let start_step = state.step;
    let (mut first_ce, mut last_ce) = (f64::NAN, f64::NAN);
    let mut epoch_plan: Option<(u64, Vec<Vec<Vec<Row>>>)> = None;
    while state.step < total_steps {
        let step_started = Instant::now();
        let epoch = state.step / steps_per_epoch;
        if epoch_plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_plan = Some((epoch, plan.epoch(&lengths, epoch)));
        }
        let micro_batches: Vec<Collated> = epoch_plan.as_ref().expect("planned").1
            [(state.step % steps_per_epoch) as usize]
            .iter()
            .map(|rows| collate(rows, examples, pad_id))
            .collect();
        let n_total: usize = micro_batches.iter().map(|c| c.batch.num_targets()).sum();
        let lr = learning_rate(t.schedule, peak_lr, state.step, total_steps, t.warmup_steps);
        trainer.grads.fill(0.0);

        // Coefficients for TALR's batch-wide softmax need every micro-batch's losses first: a
        // loss-only forward pass over them, then forward + backward per micro-batch.
        let prepass = objective.batch_wide() && batch_scope && micro_batches.len() > 1;
        let mut weights: Vec<Vec<f32>> = Vec::new();
        let mut stats: Option<WeightStats> = None;
        if prepass {
            let mut tokens = Vec::new();
            for (mi, mb) in micro_batches.iter().enumerate() {
                set_dropout_key(model, state.step, mi);
                let losses = model.forward(&mut trainer.workspace, &mb.batch)?;
                collect_tokens(mi, mb, losses, &mut tokens);
            }
            (weights, stats) = coefficients(&objective, &tokens, &micro_batches, flow.as_deref(), n_total);
        }
        let (mut loss, mut ce_sum) = (0.0f64, 0.0f64);
        for (mi, mb) in micro_batches.iter().enumerate() {
            set_dropout_key(model, state.step, mi);
            let losses = model.forward(&mut trainer.workspace, &mb.batch)?;
            let w = if prepass {
                weights[mi].clone()
            } else {
                let mut tokens = Vec::new();
                collect_tokens(0, mb, losses, &mut tokens);
                let (mut w, s) = coefficients(&objective, &tokens, std::slice::from_ref(mb), flow.as_deref(), n_total);
                stats = stats.or(s);
                w.remove(0)
            };
            loss += losses.iter().zip(&w).map(|(&l, &c)| l as f64 * c as f64).sum::<f64>();
            ce_sum += mb
                .batch
                .targets
                .iter()
                .zip(losses)
                .filter(|(t, _)| **t != keel_kernels::cross_entropy::IGNORE)
                .map(|(_, &l)| l as f64)
                .sum::<f64>();
            model.backward(&mut trainer.workspace, &mb.batch, &w, &mut trainer.grads)?;
        }
        let l2 = match &initial {
            Some(theta0) => add_l2_to_initial(&mut trainer.grads, model.trainable_params(), theta0, t.l2_init),
            None => 0.0,
        };
        let loss = loss + l2;
        let grad_norm = keel_kernels::clip::global_norm(&trainer.grads);
        if !loss.is_finite() || !grad_norm.is_finite() {
            let last = checkpoint::list(run_dir)?.pop();
            bail!(
                "step {}: the loss is {loss} and the gradient norm {grad_norm}; stopping before the update. {} Lower train.lr or check the data.",
                state.step + 1,
                match last {
                    Some(p) => format!("The last good checkpoint is {}.", p.display()),
                    None => "No checkpoint was written yet.".into(),
                }
            );
        }
        trainer.apply_update(model, lr);
        state.step += 1;
        let tokens: u64 =
            micro_batches.iter().map(|c| c.batch.segments.iter().filter(|&&s| s != 0).count() as u64).sum();
        state.tokens_seen += tokens;
        let secs = step_started.elapsed().as_secs_f64();
        let ce = ce_sum / n_total.max(1) as f64;
        if first_ce.is_nan() {
            first_ce = ce;
        }
        last_ce = ce;
        let mut line = json!({"step": state.step, "epoch": epoch, "loss": loss, "ce": ce,
            "grad_norm": grad_norm, "lr": lr, "tokens": tokens, "tokens_per_s": tokens as f64 / secs, "step_s": secs,
            "supervised_tokens": n_total});
        if t.l2_init > 0.0 {
            line["l2_penalty"] = json!(l2);
        }
        if let Some(s) = stats {
            line["tau"] = json!(s.tau);
            line["weight_mean"] = json!(s.mean);
            line["weight_min"] = json!(s.min);
            line["weight_max"] = json!(s.max);
            line["at_floor"] = json!(s.at_floor);
        }
        writeln!(metrics, "{line}")
            .and_then(|_| metrics.flush())
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;
        if opts.progress {
            let done = state.step - start_step;
            let eta = started.elapsed().as_secs_f64() / done as f64 * (total_steps - state.step) as f64;
            eprintln!(
                "step {}/{total_steps}  loss {loss:.4}  lr {lr:.2e}  grad {grad_norm:.3}  {:.0} tok/s  ETA {}",
                state.step,
                tokens as f64 / secs,
                keel_infer::progress::format_duration(eta)
            );
        }
        if config.output.save_every > 0 && state.step % config.output.save_every == 0 && state.step < total_steps {
            checkpoint::save(run_dir, model, &trainer.optimizer, &state, config.output.keep_last)?;
        }
    }
    checkpoint::save(run_dir, model, &trainer.optimizer, &state, config.output.keep_last)?;
    // LoRA: the adapter in PEFT's layout, and the merged model beside it for evaluation.
    if let Some(adapter) = &model.lora {
        adapter.save(&run_dir.join("final-adapter"))?;
    }
    model.merge_lora();
    let final_dir = run_dir.join("final");
    pre.save_hf(&final_dir)?;
    if opts.progress {
        eprintln!("saved {} ({} steps)", final_dir.display(), state.step);
    }
    Ok(RunSummary { steps: state.step, first_ce, last_ce, final_dir })
}

/// Each micro-batch draws its own LoRA dropout masks, reproducibly (resume gives the same ones).
fn set_dropout_key(model: &mut Transformer, step: u64, micro: usize) {
    if let Some(l) = &mut model.lora {
        l.dropout_key = step.wrapping_mul(0x1_0000) ^ micro as u64;
    }
}

fn collect_tokens(micro: usize, mb: &Collated, losses: &[f32], out: &mut Vec<Token>) {
    for (pos, &ex) in mb.example_of.iter().enumerate() {
        if ex != usize::MAX {
            out.push(Token { micro, pos, loss: losses[pos] as f64, example: ex });
        }
    }
}

/// Per-position loss coefficients for `micro` (one vector per micro-batch), from the tokens of
/// the group. The objective normalizes by the group's token count; rescaling to `n_total` makes
/// the accumulated loss the mean over the whole optimizer batch.
fn coefficients(
    objective: &Objective,
    tokens: &[Token],
    micro: &[Collated],
    flow: Option<&[f64]>,
    n_total: usize,
) -> (Vec<Vec<f32>>, Option<WeightStats>) {
    let losses: Vec<f64> = tokens.iter().map(|t| t.loss).collect();
    let sequence: Vec<usize> = tokens.iter().map(|t| t.example).collect();
    let sample: Vec<f64> = tokens.iter().map(|t| flow.map_or(1.0, |w| w[t.example])).collect();
    let (c, stats) = token_coefficients(objective, &losses, &sequence, &sample);
    let rescale = tokens.len() as f64 / n_total.max(1) as f64;
    let mut out: Vec<Vec<f32>> = micro.iter().map(|m| vec![0.0; m.batch.targets.len()]).collect();
    for (t, c) in tokens.iter().zip(c) {
        out[t.micro][t.pos] = (c * rescale) as f32;
    }
    (out, stats)
}

/// FLOW's per-example weights under the initial model, cached beside the run.
fn flow_example_weights(
    run_dir: &Path,
    model: &Transformer,
    examples: &[keel_data::mask::TokenizedExample],
    pad_id: u32,
    data_fp: &str,
    max_seq_len: usize,
    progress: bool,
) -> Result<Vec<f64>> {
    let cache = run_dir.join("flow_weights.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", cache.display()))?;
        if v["data_fingerprint"] == data_fp {
            let w: Vec<f64> = serde_json::from_value(v["weights"].clone())?;
            ensure!(
                w.len() == examples.len(),
                "{} has {} weights for {} examples; delete it",
                cache.display(),
                w.len(),
                examples.len()
            );
            return Ok(w);
        }
    }
    if progress {
        eprintln!("FLOW: measuring {} examples under the initial model", examples.len());
    }
    const ROWS: usize = 4;
    let mut ws = Workspace::new(&model.config, ROWS, max_seq_len, false)?;
    ws.logits_at_targets_only = true;
    let mut sums = vec![(0.0f64, 0usize); examples.len()];
    let order: Vec<usize> = (0..examples.len()).collect();
    for chunk in order.chunks(ROWS) {
        let rows: Vec<Row> = chunk.iter().map(|&i| vec![i]).collect();
        let mb = collate(&rows, examples, pad_id);
        let losses = model.forward(&mut ws, &mb.batch)?;
        for (pos, &ex) in mb.example_of.iter().enumerate() {
            if ex != usize::MAX {
                sums[ex].0 += losses[pos] as f64;
                sums[ex].1 += 1;
            }
        }
    }
    let means: Vec<f64> = sums.iter().map(|&(s, n)| s / n.max(1) as f64).collect();
    let (weights, tau) = flow_weights(&means);
    write_json(&cache, &json!({"data_fingerprint": data_fp, "tau": tau, "mean_losses": means, "weights": weights}))?;
    Ok(weights)
}

/// Opens metrics.jsonl for appending, first dropping lines past `step` (a resumed run redoes
/// those steps).
fn open_metrics(path: &Path, step: u64) -> Result<std::fs::File> {
    let kept: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(String::from)
        .collect();
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    for l in kept {
        writeln!(f, "{l}")?;
    }
    Ok(f)
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)?).with_context(|| format!("cannot write {}", path.display()))
}
