//! `keel train`: the fine-tuning run, from a config to a saved model.

use crate::checkpoint::{self, fingerprint, TrainState};
use crate::config::RunConfig;
use crate::config::TalrScope;
use crate::objective::flow::flow_weights;
use crate::objective::Objective;
use crate::schedule::learning_rate;
use crate::step::{L2ToInitial, StepReport, Trainer};
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

/// How `keel train` runs beyond its config.
pub struct RunOptions {
    /// Continue from the run directory's last checkpoint instead of refusing a directory that has some.
    pub resume: bool,
    /// Print progress to stderr.
    pub progress: bool,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunSummary {
    /// Optimizer steps the run has taken in all (including those before a resume).
    pub steps: u64,
    /// Plain mean cross-entropy of the supervised tokens at the first and last step of this
    /// invocation (comparable across objectives, unlike each objective's own loss).
    pub first_ce: f64,
    /// Final value; see `first_ce`.
    pub last_ce: f64,
    /// Where the final (LoRA-merged) model was saved: `output.dir/final`.
    pub final_dir: PathBuf,
}

/// A run's data, tokenized, with the fingerprint that ties checkpoints to it.
pub struct RunData {
    /// The tokenized examples and the preparation counts.
    pub prepared: Prepared,
    /// Hash of the examples' token ids and supervision masks; a checkpoint made on other data is not resumed.
    pub fingerprint: String,
}

/// Loads the model and reads, tokenizes and counts the training data (also `keel data inspect`).
pub fn load_data(config: &RunConfig) -> Result<(Pretrained, RunData)> {
    let pre = config.model.load()?;
    let template = pre.chat_template.as_ref().with_context(|| {
        format!(
            "{} has no chat template (a base model?): set model.chat_template = \"gemma\", \"chatml\" or a Jinja file",
            config.model.path.display()
        )
    })?;
    let d = &config.data;
    let mut examples = read_examples(&d.path, d.format, d.target, &d.fields)?;
    if d.holdout > 0.0 {
        let (kept, held) = keel_data::holdout::split(examples, d.holdout);
        eprintln!(
            "data: held out {} of {} examples (data.holdout = {}); score them with keel eval --suite domain:{} --holdout {}",
            held.len(),
            kept.len() + held.len(),
            d.holdout,
            d.path.display(),
            d.holdout
        );
        ensure!(!kept.is_empty(), "data.holdout = {} leaves no example to train on", d.holdout);
        examples = kept;
    }
    if d.max_examples > 0 {
        examples.truncate(d.max_examples);
    }
    let prepared = prepare(&examples, &pre.tokenizer, template, d.max_seq_len, d.truncation)?;
    let fingerprint = fingerprint(prepared.examples.iter().flat_map(|e| {
        e.ids.iter().flat_map(|i| i.to_le_bytes()).chain(e.supervised.iter().map(|&s| s as u8)).collect::<Vec<u8>>()
    }));
    Ok((pre, RunData { prepared, fingerprint }))
}

/// Holds a directory (a run's, a sweep's) for one keel process at a time. The lock is an
/// advisory `flock` on `.keel.lock`, released by the kernel when the process ends, however it
/// ends.
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock of `dir` for `holder` (the command, named in the refusal), or refuses,
    /// naming the pid that holds it and what to do (`hint`).
    pub fn acquire(dir: &Path, holder: &str, hint: &str) -> Result<DirLock> {
        let path = dir.join(".keel.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        if file.try_lock().is_err() {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            bail!("{} is in use by another {holder} (pid {}); {hint}", dir.display(), pid.trim());
        }
        file.set_len(0).and_then(|_| write!(file, "{}", std::process::id())).and_then(|_| file.flush())?;
        Ok(DirLock { _file: file })
    }
}

/// The fingerprint a checkpoint must match to resume: everything but the output section and
/// the run's length (extending a run is allowed; its schedule then follows the new length).
fn config_fingerprint(config_json: &serde_json::Value) -> String {
    let mut fp_json = config_json.clone();
    if let Some(o) = fp_json.as_object_mut() {
        o.remove("output");
    }
    if let Some(t) = fp_json["train"].as_object_mut() {
        t.remove("max_steps");
        t.remove("epochs");
    }
    fingerprint(fp_json.to_string().into_bytes())
}

/// The trainer `keel train` builds for `model`: buffers, optimizer, objective state (FLOW's coefficients, θ₀ for
/// L2). Attaches the LoRA adapter first when the run trains one.
pub fn build_trainer(
    config: &RunConfig,
    model: &mut Transformer,
    data: &RunData,
    pad_id: u32,
    opts: &RunOptions,
) -> Result<Trainer> {
    let t = &config.train;
    let objective = config.objective();
    let flow_coefficients = match objective {
        Objective::Flow => Some(flow_example_coefficients(&config.output.dir, model, data, pad_id, config, opts)?),
        _ => None,
    };
    if let Some(lc) = config.lora_config()? {
        model.lora = Some(LoraAdapter::new(&model.config, lc, t.seed)?);
    }
    let l2 = (t.l2_init > 0.0).then(|| L2ToInitial { lambda: t.l2_init, initial: model.trainable_params().to_vec() });
    let hyper =
        AdamWHyper { lr: config.peak_lr(), beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: t.weight_decay };
    let mut workspace =
        Workspace::new(&model.config, t.micro_batch_size, config.data.max_seq_len, t.grad_checkpointing)?;
    // Prompt and padding positions carry no loss: skip their vocabulary-wide logits.
    workspace.logits_at_targets_only = true;
    Ok(Trainer {
        workspace,
        grads: vec![0.0; model.num_trainable()],
        optimizer: AdamW::new(model.num_trainable(), hyper),
        max_grad_norm: t.max_grad_norm,
        objective,
        batch_scope: config.talr.scope == TalrScope::Batch,
        flow_coefficients,
        l2,
    })
}

/// Runs `config` to its end (or continues it with `opts.resume`), saving checkpoints, metrics
/// and the final model.
pub fn train(config: &RunConfig, opts: &RunOptions) -> Result<RunSummary> {
    let t = &config.train;
    keel_kernels::parallel::init_threads(t.threads).map_err(anyhow::Error::msg)?;
    let run_dir = &config.output.dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    let _lock = DirLock::acquire(run_dir, "keel train", "wait for it to finish or choose another output.dir")?;
    let existing = checkpoint::list(run_dir)?;
    if !opts.resume && !existing.is_empty() {
        bail!(
            "{} already holds checkpoints; pass --resume to continue that run, or choose another output.dir",
            run_dir.display()
        );
    }
    let (mut pre, data) = load_data(config)?;
    if opts.progress {
        print_data_counts(config, &data.prepared.stats);
    }
    ensure!(data.prepared.stats.kept > 0, "no training example is left after preparation (see the counts above)");
    let context = pre.model.config.max_position_embeddings;
    ensure!(
        config.data.max_seq_len <= context,
        "data.max_seq_len {} exceeds the model's context length {context}; lower it",
        config.data.max_seq_len
    );
    let config_json = serde_json::to_value(config)?;
    let config_fp = config_fingerprint(&config_json);
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
    let mut trainer = build_trainer(config, &mut pre.model, &data, pad_id, opts)?;
    let model = &mut pre.model;
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
    // Written only once the run is accepted: a refused --resume leaves the run's files as they were.
    let version = env!("CARGO_PKG_VERSION");
    write_json(&run_dir.join("config.json"), &json!({"keel_version": version, "config": config_json}))?;
    let mut log = StepLog::open(&run_dir.join("metrics.jsonl"), state.step, total_steps, opts.progress)?;
    let resumed_at = state.step;
    let mut epoch_plan: Option<(u64, Vec<Vec<Vec<Row>>>)> = None;
    while state.step < total_steps {
        let step_started = Instant::now();
        let epoch = state.step / steps_per_epoch;
        if epoch_plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_plan = Some((epoch, plan.epoch(&lengths, epoch)));
        }
        let rows = &epoch_plan.as_ref().expect("planned").1[(state.step % steps_per_epoch) as usize];
        let micro_batches: Vec<Collated> = rows.iter().map(|rows| collate(rows, examples, pad_id)).collect();
        let lr = learning_rate(t.schedule, config.peak_lr(), state.step, total_steps, t.warmup_steps);
        let report = trainer.optimizer_step(model, &micro_batches, lr, state.step).map_err(|e| {
            let last = checkpoint::list(run_dir).ok().and_then(|mut l| l.pop());
            let resume_from = match last {
                Some(p) => format!("The last good checkpoint is {}.", p.display()),
                None => "No checkpoint was written yet.".into(),
            };
            e.context(format!(
                "step {}: stopping before the update. {resume_from} Lower train.lr or check the data.",
                state.step + 1
            ))
        })?;
        state.step += 1;
        state.tokens_seen += report.tokens;
        log.record(&state, epoch, lr, &report, step_started.elapsed().as_secs_f64())?;
        if config.output.save_every > 0
            && state.step.is_multiple_of(config.output.save_every)
            && state.step < total_steps
        {
            checkpoint::save(run_dir, model, &trainer.optimizer, &state, config.output.keep_last)?;
        }
    }
    // A finished run resumed again has nothing new to save: its last checkpoint stays as it is.
    let save_checkpoint = state.step > resumed_at || existing.is_empty();
    let final_dir = save_final(config, &mut pre, &trainer.optimizer, &state, save_checkpoint, opts)?;
    Ok(RunSummary { steps: state.step, first_ce: log.first_ce, last_ce: log.last_ce, final_dir })
}

/// The last checkpoint (unless it is already there), the LoRA adapter in PEFT's layout, and
/// the (merged) model in `final/`; returns that directory.
fn save_final(
    config: &RunConfig,
    pre: &mut Pretrained,
    optimizer: &AdamW,
    state: &TrainState,
    save_checkpoint: bool,
    opts: &RunOptions,
) -> Result<PathBuf> {
    let run_dir = &config.output.dir;
    if save_checkpoint {
        checkpoint::save(run_dir, &pre.model, optimizer, state, config.output.keep_last)?;
    }
    // LoRA: the adapter in PEFT's layout, and the merged model beside it for evaluation.
    if let Some(adapter) = &pre.model.lora {
        adapter.save(&run_dir.join("final-adapter"))?;
    }
    pre.model.merge_lora();
    let final_dir = run_dir.join("final");
    pre.save_hf(&final_dir)?;
    if opts.progress {
        eprintln!("saved {} ({} steps)", final_dir.display(), state.step);
    }
    Ok(final_dir)
}

fn print_data_counts(config: &RunConfig, stats: &keel_data::batching::PrepStats) {
    eprintln!(
        "data: {} examples, {} used ({} supervised of {} tokens); skipped: {} without an assistant turn, {} too long \
         ({:?} policy, max_seq_len {}), {} truncated, {} with no target left",
        stats.examples,
        stats.kept,
        stats.supervised_tokens,
        stats.tokens,
        stats.no_assistant_turn,
        stats.too_long_dropped,
        config.data.truncation,
        config.data.max_seq_len,
        stats.truncated,
        stats.no_target_after_truncation
    );
}

/// metrics.jsonl and the progress lines on stderr.
struct StepLog {
    path: PathBuf,
    file: std::fs::File,
    started: Instant,
    start_step: u64,
    total_steps: u64,
    progress: bool,
    first_ce: f64,
    last_ce: f64,
}

impl StepLog {
    fn open(path: &Path, step: u64, total_steps: u64, progress: bool) -> Result<StepLog> {
        let file = open_metrics(path, step)?;
        let (first_ce, last_ce) = (f64::NAN, f64::NAN);
        let started = Instant::now();
        Ok(StepLog { path: path.to_owned(), file, started, start_step: step, total_steps, progress, first_ce, last_ce })
    }

    fn record(&mut self, state: &TrainState, epoch: u64, lr: f64, r: &StepReport, secs: f64) -> Result<()> {
        if self.first_ce.is_nan() {
            self.first_ce = r.ce;
        }
        self.last_ce = r.ce;
        let tokens_per_s = r.tokens as f64 / secs;
        let mut line = json!({"step": state.step, "epoch": epoch, "loss": r.loss, "ce": r.ce,
            "grad_norm": r.grad_norm, "lr": lr, "tokens": r.tokens, "tokens_per_s": tokens_per_s, "step_s": secs,
            "supervised_tokens": r.supervised_tokens});
        if let Some(l2) = r.l2_penalty {
            line["l2_penalty"] = json!(l2);
        }
        if let Some(s) = r.coefficients {
            line["tau"] = json!(s.tau);
            line["coef_mean"] = json!(s.mean);
            line["coef_min"] = json!(s.min);
            line["coef_max"] = json!(s.max);
            line["at_floor"] = json!(s.at_floor);
        }
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        if self.progress {
            let done = state.step - self.start_step;
            let left = (self.total_steps - state.step) as f64;
            let eta = self.started.elapsed().as_secs_f64() / done as f64 * left;
            eprintln!(
                "step {}/{}  loss {:.4}  lr {lr:.2e}  grad {:.3}  {tokens_per_s:.0} tok/s  ETA {}",
                state.step,
                self.total_steps,
                r.loss,
                r.grad_norm,
                keel_infer::progress::format_duration(eta)
            );
        }
        Ok(())
    }
}

/// FLOW's per-example coefficients under the initial model, cached beside the run
/// (`flow_weights.json`, reused while the data is unchanged).
fn flow_example_coefficients(
    run_dir: &Path,
    model: &Transformer,
    data: &RunData,
    pad_id: u32,
    config: &RunConfig,
    opts: &RunOptions,
) -> Result<Vec<f64>> {
    let (examples, data_fp) = (&data.prepared.examples, &data.fingerprint);
    let (max_seq_len, progress) = (config.data.max_seq_len, opts.progress);
    let cache = run_dir.join("flow_weights.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt; delete it", cache.display()))?;
        if v["data_fingerprint"] == data_fp.as_str() {
            let w: Vec<f64> = serde_json::from_value(v["weights"].clone())
                .with_context(|| format!("{}: \"weights\" is not a list of numbers; delete it", cache.display()))?;
            ensure!(
                w.len() == examples.len() && w.iter().all(|x| x.is_finite()),
                "{} has {} weights for {} examples (or non-finite ones); delete it",
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
