//! `keel bench`: training-step and GEMM throughput on randomly initialised models.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use keel_model::lora::{LoraAdapter, LoraConfig, Module};
use keel_model::rng::Rng;
use keel_model::Transformer;
use keel_train::bench::{bench_trainer, random_batch, shape_config, LossOn, BENCH_LR};
use keel_train::objective::talr::{Normalization, TalrConfig, Temperature};
use keel_train::objective::Objective;
use keel_train::step::StepReport;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time full training steps (forward, backward, clipping, AdamW) of a named model shape.
    ///
    /// The model is randomly initialised (N(0, 0.02), as transformers does) and trained on random
    /// tokens with mean cross-entropy, AdamW (lr 1e-4, weight decay 0.1 on matrices) and
    /// gradient clipping at 1.0: the same work as bench/train_step_torch.py.
    Train(TrainArgs),
    /// Time the matrix products of the training step alone: the machine's ceiling for it.
    Gemm(GemmArgs),
    /// Time prompt processing and greedy decoding with the KV cache, for one sequence or for
    /// several decoded together (--slots, as `keel eval` decodes).
    ///
    /// The twin is bench/generate_torch.py on the same weights converted to f32
    /// (`keel convert`).
    Generate(GenerateBenchArgs),
    /// Time multiple-choice scoring by log-likelihood (the first N items of a task, all their
    /// choices) as `keel eval` does it.
    ///
    /// The twin is bench/loglik_torch.py: lm-evaluation-harness's recipe (requests sorted by
    /// length, batches padded, log-softmax of the full logits) with transformers on the same
    /// weights converted to f32.
    Loglik(LoglikBenchArgs),
}

#[derive(Args)]
pub struct LoglikBenchArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// A multiple-choice task (arc_easy, arc_challenge, boolq, mmlu) or task file.
    #[arg(long, default_value = "arc_easy")]
    task: String,
    /// Items scored: the task's first N.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_rows: usize,
    /// Where the benchmark data lives ($KEEL_DATA, else ./data: what `keel data fetch` fills).
    #[arg(long, default_value_os_t = keel_data::default_data_dir())]
    data_dir: std::path::PathBuf,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GenerateBenchArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 256)]
    prompt_tokens: usize,
    /// Tokens decoded (EOS does not stop the benchmark).
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sequences decoded together, each after its own copy of the prompt: every decoding step
    /// feeds one token to each (`keel eval`'s --batch-rows).
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// Repetitions; the medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Model shape: smollm2-135m (hidden 576, 30 layers, 9 heads, 3 KV heads, FFN 1536,
    /// vocab 49152, tied), gemma3-270m (Gemma 3: hidden 640, 18 layers, 4 heads of 256, 1 KV
    /// head, FFN 2048, vocab 262144, tied, window 512 with every sixth layer global) or tiny (a
    /// quick smoke test).
    #[arg(long, default_value = "smollm2-135m")]
    shape: String,
    /// Which positions carry a loss: all (the PyTorch twin's default work), or last-half (as in
    /// SFT, where the prompt has none; the LM head then runs at those positions only, as
    /// `keel train` runs it).
    #[arg(long, value_enum, default_value_t = BenchLossOn::All)]
    loss_on: BenchLossOn,
    /// Sequences per step (one micro-batch).
    #[arg(long, default_value_t = 4)]
    batch_rows: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Keep only each layer's input and recompute the layer during the backward.
    #[arg(long)]
    grad_checkpointing: bool,
    /// The objective; talr is simplex with sequence-median τ and floor 0.01. Coefficients come
    /// from the step's own losses, so the difference to ce is the objective's whole cost.
    #[arg(long, value_enum, default_value_t = BenchObjective::Ce)]
    objective: BenchObjective,
    /// Train LoRA adapters of this rank on all seven projections instead of every weight.
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// `--loss-on`: which positions of the random batch carry a loss.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchLossOn {
    /// Every position but each row's last.
    All,
    /// Each row's second half.
    LastHalf,
}

impl BenchLossOn {
    fn loss_on(self) -> LossOn {
        match self {
            BenchLossOn::All => LossOn::All,
            BenchLossOn::LastHalf => LossOn::LastHalf,
        }
    }
}

/// The objectives `keel bench train` times.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchObjective {
    /// Mean cross-entropy.
    Ce,
    /// Token-Adaptive Loss Reweighting.
    Talr,
    /// Dynamic Fine-Tuning.
    Dft,
}

impl BenchObjective {
    fn objective(self) -> Objective {
        match self {
            BenchObjective::Ce => Objective::Ce,
            BenchObjective::Talr => Objective::Talr(TalrConfig {
                normalization: Normalization::Simplex,
                temperature: Temperature::SequenceMedian,
                floor: 0.01,
            }),
            BenchObjective::Dft => Objective::Dft,
        }
    }
}

#[derive(Args)]
pub struct GemmArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Instead of OpenBLAS's training shapes, time one decoding step's weight products with this
    /// many rows (one token per decoded sequence): SmolLM2-135M's 30 layers and LM head, packed
    /// as the decoder packs them, every weight streamed from memory as in a real step.
    #[arg(long)]
    decode_rows: Option<usize>,
    /// Storage of the packed weights for --decode-rows.
    #[arg(long, value_enum, default_value_t = crate::infer::Dtype::F32)]
    dtype: crate::infer::Dtype,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::Gemm(a) => bench_gemm(a),
        BenchCommand::Generate(a) => bench_generate(a),
        BenchCommand::Loglik(a) => bench_loglik(a),
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn bench_train(a: TrainArgs) -> Result<()> {
    anyhow::ensure!(a.steps > 0 && a.threads > 0, "--steps and --threads must be positive");
    keel_kernels::parallel::init_threads(a.threads).map_err(anyhow::Error::msg)?;
    let config = shape_config(&a.shape)?;
    let mut model = Transformer::init_random(config, 0, 0.02);
    if a.lora_rank > 0 {
        let lc = LoraConfig {
            rank: a.lora_rank,
            alpha: 2.0 * a.lora_rank as f64,
            dropout: 0.0,
            targets: Module::ALL.to_vec(),
        };
        model.lora = Some(LoraAdapter::new(&model.config, lc, 0)?);
    }
    let params = model.layout.total;
    let trainable = model.num_trainable();
    let on = a.loss_on.loss_on();
    let batch = [random_batch(a.batch_rows, a.seq_len, model.config.vocab_size, 1, on)];
    let mut trainer =
        bench_trainer(&model, a.batch_rows, a.seq_len, a.grad_checkpointing, a.objective.objective(), on)?;
    let mut steps: Vec<StepReport> = Vec::new();
    for step in 0..=a.steps {
        let s = trainer.optimizer_step(&mut model, &batch, BENCH_LR, step as u64)?;
        let total = s.forward_s + s.coefficients_s + s.backward_s + s.optimizer_s;
        if !a.json {
            eprintln!("step {step}{}: loss {:.4}, {total:.3} s", if step == 0 { " (warm-up)" } else { "" }, s.loss);
        }
        if step > 0 {
            steps.push(s);
        }
    }
    let of = |f: fn(&StepReport) -> f64| steps.iter().map(f).collect::<Vec<f64>>();
    let step_s = of(|s| s.forward_s + s.coefficients_s + s.backward_s + s.optimizer_s);
    let (fwd_s, bwd_s, opt_s, coef_s, losses) =
        (of(|s| s.forward_s), of(|s| s.backward_s), of(|s| s.optimizer_s), of(|s| s.coefficients_s), of(|s| s.loss));
    let med = median(&step_s);
    let tokens = (a.batch_rows * a.seq_len) as f64;
    let gflops = 6.0 * params as f64 * tokens / med / 1e9;
    let peak = peak_rss_mib()?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "keel", "shape": a.shape, "batch": a.batch_rows, "seq": a.seq_len, "threads": a.threads,
                "steps": a.steps, "params": params, "median_s": med, "min_s": step_s.iter().copied().fold(f64::MAX, f64::min),
                "forward_s": median(&fwd_s), "backward_s": median(&bwd_s), "optimizer_s": median(&opt_s),
                "coefficients_s": median(&coef_s),
                "tokens_per_s": tokens / med, "gflops": gflops, "peak_rss_mib": peak, "losses": losses,
                "grad_checkpointing": a.grad_checkpointing, "loss_on": a.loss_on.to_possible_value().map(|v| v.get_name().to_string()), "objective": a.objective.objective().name(), "lora_rank": a.lora_rank,
                "trainable_params": trainable, "blas_kernels": keel_kernels::gemm::blas_core()})
        );
    } else {
        println!(
            "shape {} ({params} parameters, {trainable} trained), batch {} × seq {}, {} threads, objective {}{}",
            a.shape,
            a.batch_rows,
            a.seq_len,
            a.threads,
            a.objective.objective().name(),
            if a.grad_checkpointing { ", gradient checkpointing" } else { "" }
        );
        println!(
            "  step      {med:.3} s median of {} (forward {:.3}, coefficients {:.5}, backward {:.3}, clip+AdamW {:.3})",
            a.steps,
            median(&fwd_s),
            median(&coef_s),
            median(&bwd_s),
            median(&opt_s)
        );
        println!("  tokens/s  {:.0}", tokens / med);
        println!("  GFLOP/s   {gflops:.1}  (6 · params · tokens / time)");
        println!("  peak RSS  {peak:.0} MiB");
    }
    Ok(())
}

/// The GEMM shapes of a smollm2-135m training step at 1024 tokens (M×K·K×N, and the
/// weight-gradient form Aᵀ·B), plus a square reference.
fn bench_gemm(a: GemmArgs) -> Result<()> {
    use keel_kernels::gemm::gemm;
    keel_kernels::parallel::init_threads(a.threads).map_err(anyhow::Error::msg)?;
    if let Some(rows) = a.decode_rows {
        return bench_decode_products(rows, a.dtype.storage(), a.threads, a.json);
    }
    let shapes: [(&str, usize, usize, usize, bool); 5] = [
        ("1024x1024 · 1024x1024", 1024, 1024, 1024, false),
        ("1024x576 · 576x1536 (gate/up)", 1024, 576, 1536, false),
        ("1024x576 · 576x49152 (LM head)", 1024, 576, 49152, false),
        ("1024x1536 · 1536x576 (down)", 1024, 1536, 576, false),
        ("(1024x576)ᵀ · 1024x1536 (weight grad)", 576, 1024, 1536, true),
    ];
    let mut rng = Rng::new(3);
    let mut results = Vec::new();
    for (name, m, k, n, trans_a) in shapes {
        let a_mat: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let b_mat: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
        let mut c = vec![0.0f32; m * n];
        let mut times = Vec::new();
        for i in 0..12 {
            let t = Instant::now();
            gemm(trans_a, false, m, n, k, &a_mat, &b_mat, 0.0, &mut c);
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let gflops = 2.0 * (m * n * k) as f64 / median(&times) / 1e9;
        if !a.json {
            println!("{name:40} {gflops:7.1} GFLOP/s");
        }
        results.push(serde_json::json!({"shape": name, "m": m, "k": k, "n": n, "gflops": gflops}));
    }
    if a.json {
        println!("{}", serde_json::json!({"impl": "keel", "threads": a.threads, "gemm": results}));
    }
    Ok(())
}

/// One decoding step's weight products at SmolLM2-135M's shapes, through packed weights.
fn bench_decode_products(
    rows: usize,
    storage: keel_kernels::packed::Storage,
    threads: usize,
    json: bool,
) -> Result<()> {
    use keel_kernels::packed::PackedLinear;
    use keel_model::inference::PACKED_MAX_ROWS;
    anyhow::ensure!(
        (1..=PACKED_MAX_ROWS).contains(&rows),
        "--decode-rows must be 1 to {PACKED_MAX_ROWS} (the decoder packs calls of up to {PACKED_MAX_ROWS} rows)"
    );
    let (h, kv, f, vocab, layers) = (576, 192, 1536, 49152, 30);
    let layer: [(usize, usize); 7] = [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)];
    let mut rng = Rng::new(5);
    let mut weights = Vec::new(); // (n_in, n_out, unpacked, packed)
    for &(n_in, n_out) in layer.iter().cycle().take(7 * layers).chain(std::iter::once(&(h, vocab))) {
        let w: Vec<f32> = (0..n_in * n_out).map(|_| storage.round(rng.normal() as f32 * 0.05)).collect();
        let packed = PackedLinear::pack_as(&w, n_in, n_out, storage);
        weights.push((n_in, n_out, w, packed));
    }
    let x: Vec<f32> = (0..rows * f).map(|_| rng.normal() as f32).collect();
    let mut y = vec![0.0f32; rows * vocab];
    let mut times = Vec::new();
    for i in 0..12 {
        let t = Instant::now();
        for (n_in, n_out, w, packed) in &weights {
            packed.forward(&mut y[..rows * n_out], &x[..rows * n_in], w, false);
        }
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let step = median(&times);
    let params: usize = weights.iter().map(|(i, o, ..)| i * o).sum();
    let bytes: usize = weights.iter().map(|w| w.3.bytes()).sum();
    let (gflops, gbps) = (2.0 * (rows * params) as f64 / step / 1e9, bytes as f64 / step / 1e9);
    if json {
        println!(
            "{}",
            serde_json::json!({"impl": "keel", "threads": threads, "decode_rows": rows, "storage": format!("{storage:?}"),
            "step_ms": step * 1e3, "gflops": gflops, "weight_gb_per_s": gbps})
        );
    } else {
        println!(
            "decoding step's products, {rows} rows, {storage:?} weights ({:.0} MB), {threads} threads:",
            bytes as f64 / 1e6
        );
        println!("  {:.1} ms per step: {gflops:.1} GFLOP/s, weights read at {gbps:.1} GB/s", step * 1e3);
    }
    Ok(())
}

/// Prompt tokens: a fixed English text repeated, tokenized by the model (the same text as the
/// PyTorch twin uses).
const BENCH_TEXT: &str =
    "The quick brown fox jumps over the lazy dog while the committee reviews the annual report on renewable energy. ";

fn bench_generate(a: GenerateBenchArgs) -> Result<()> {
    use keel_model::inference::Decoder;
    anyhow::ensure!(a.prompt_tokens > 0 && a.repeat > 0, "--prompt-tokens and --repeat must be positive");
    let pre = a.model.load()?;
    let mut ids = pre.tokenizer.encode(&BENCH_TEXT.repeat(a.prompt_tokens / 8 + 1), false)?;
    ids.truncate(a.prompt_tokens);
    let vocab = pre.model.config.vocab_size;
    let argmax =
        |l: &[f32]| l.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32;
    let (mut prefill_s, mut decode_s) = (vec![], vec![]);
    let slots = a.slots;
    anyhow::ensure!(slots > 0, "--slots must be positive");
    // One decoder for all repetitions, as `keel generate` and `keel eval` keep theirs.
    let mut dec = Decoder::new(&pre.model, slots, a.prompt_tokens + a.max_new_tokens);
    for _ in 0..a.repeat {
        let t0 = Instant::now();
        let mut next = vec![0u32; slots];
        for (slot, next) in next.iter_mut().enumerate() {
            dec.reset(slot);
            *next = argmax(&dec.feed(&[(slot, &ids)])?[..vocab]);
        }
        let t1 = Instant::now();
        for _ in 0..a.max_new_tokens {
            let logits = dec.step(&next)?;
            next = logits.chunks_exact(vocab).map(argmax).collect();
        }
        decode_s.push(t1.elapsed().as_secs_f64());
        prefill_s.push((t1 - t0).as_secs_f64());
    }
    let (p, d) = (median(&prefill_s) / slots as f64, median(&decode_s));
    let decoded = (a.max_new_tokens * slots) as f64;
    let peak = peak_rss_mib()?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "keel", "threads": a.model.threads, "slots": slots, "prompt_tokens": ids.len(),
            "new_tokens": a.max_new_tokens, "prefill_s": p, "decode_s": d, "prompt_tokens_per_s": ids.len() as f64 / p,
            "decode_tokens_per_s": decoded / d, "peak_rss_mib": peak, "blas_kernels": keel_kernels::gemm::blas_core()})
        );
    } else {
        println!("{}: {} threads, {slots} slot(s)", a.model.model.display(), a.model.threads);
        println!("  prompt   {} tokens in {p:.3} s: {:.0} tokens/s", ids.len(), ids.len() as f64 / p);
        println!("  decode   {decoded} tokens in {d:.3} s: {:.1} tokens/s", decoded / d);
        println!("  peak RSS {peak:.0} MiB");
    }
    Ok(())
}

fn bench_loglik(a: LoglikBenchArgs) -> Result<()> {
    use keel_infer::progress::Progress;
    anyhow::ensure!(a.limit > 0 && a.repeat > 0, "--items and --repeat must be positive");
    let pre = a.model.load()?;
    let task = keel_eval::harness::load_mc_task(&a.task)?;
    let mut items = task.items(&a.data_dir)?;
    items.truncate(a.limit);
    // The work measured in lm-evaluation-harness's terms: its distinct forward inputs (context +
    // continuation minus the last token), which keel forwards more compactly.
    let mut inputs = std::collections::HashSet::new();
    for item in &items {
        for i in 0..item.options() {
            let (context, continuation) = item.pair(i);
            let (ctx, cont) = keel_eval::mc::encode_pair(&pre.tokenizer, context, continuation)?;
            inputs.insert([ctx, cont[..cont.len() - 1].to_vec()].concat());
        }
    }
    let request_tokens: usize = inputs.iter().map(Vec::len).sum();
    let (mut secs, mut tokens, mut acc) = (Vec::new(), 0, 0.0);
    for _ in 0..a.repeat {
        let mut progress = Progress::quiet();
        let t = Instant::now();
        acc = keel_eval::mc::evaluate(&pre.model, &pre.tokenizer, &task, &items, a.batch_rows, &mut progress)?.1;
        secs.push(t.elapsed().as_secs_f64());
        tokens = progress.tokens();
    }
    let med = median(&secs);
    let requests: usize = items.iter().map(|i| i.options()).sum();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "keel", "task": task.name, "items": items.len(), "requests": requests,
            "threads": a.model.threads, "batch_rows": a.batch_rows, "tokens": request_tokens, "forwarded_tokens": tokens,
            "median_s": med, "tokens_per_s": request_tokens as f64 / med, "acc": acc, "peak_rss_mib": peak_rss_mib()?})
        );
    } else {
        println!(
            "{} {} items ({requests} requests, {request_tokens} input tokens, {tokens} forwarded), {} threads",
            task.name,
            items.len(),
            a.model.threads
        );
        println!("  {med:.3} s median of {}: {:.0} tokens/s, acc {acc:.4}", a.repeat, request_tokens as f64 / med);
    }
    Ok(())
}
