//! `keel generate`, `keel chat`, `keel convert` and `keel export`.

use anyhow::{bail, Context, Result};
use clap::Args;
use keel_data::chat::Message;
use keel_infer::generate::{generate, Finish, GenOptions};
use keel_infer::hub::HubModel;
use keel_infer::pretrained::Pretrained;
use keel_kernels::packed::Storage;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What to do about a model without a chat format.
const NO_TEMPLATE: &str =
    "the model has no chat template (a base model?): give one with --chat-template gemma|chatml|FILE, or drop --chat";

#[derive(Args)]
pub struct ModelArgs {
    /// A GGUF file, a Hugging Face model directory (config.json, safetensors, tokenizer.json) or
    /// a model on the Hub as hf:ORG/NAME[@REVISION]; by default the model scripts/fetch-model.sh
    /// fetched ($KEEL_MODELS or ./models).
    #[arg(long, default_value_os_t = keel_infer::pretrained::default_model_path(std::path::Path::new(".")))]
    pub model: PathBuf,
    /// Worker threads (results are bit-identical for a given thread count).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Precision of the weight matrices while running: f32 (exact), or f16 / bf16 (rounded to
    /// nearest, norms stay f32): decoding then reads half the bytes per token. Everything,
    /// scoring included, runs on the rounded model, so its scores are the rounded model's.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// The chat format, replacing the model's own (a base model has none): `gemma` or `chatml`,
    /// which keel ships, or a file holding a Jinja template as transformers renders it.
    #[arg(long, value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
}

/// `--dtype`: how the weight matrices are held while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn storage(self) -> Storage {
        match self {
            Dtype::F32 => Storage::F32,
            Dtype::F16 => Storage::F16,
            Dtype::Bf16 => Storage::Bf16,
        }
    }
}

impl ModelArgs {
    pub fn load(&self) -> Result<Pretrained> {
        self.load_with_adapter(None)
    }

    /// The model with a LoRA adapter directory (PEFT layout) merged into its f32 weights, then
    /// rounded to --dtype once: rounding the base first and the merged sum again would round twice.
    pub fn load_with_adapter(&self, adapter: Option<&Path>) -> Result<Pretrained> {
        keel_kernels::parallel::init_threads(self.threads).map_err(anyhow::Error::msg)?;
        let mut pre = Pretrained::load(&self.model)?;
        if let Some(spec) = &self.chat_template {
            pre.set_chat_template(spec)?;
        }
        if let Some(dir) = adapter {
            pre.model.lora = Some(keel_model::lora::LoraAdapter::load(dir, &pre.model.config)?);
            pre.model.merge_lora();
        }
        if self.dtype != Dtype::F32 {
            pre.model.round_matrices(self.dtype.storage())?;
        }
        Ok(pre)
    }
}

#[derive(Args)]
pub struct SamplingArgs {
    /// Most tokens generated (the end-of-turn token or a --stop string ends sooner).
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling: draw from the most likely tokens holding this much probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampling draws (with --temperature above 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn options(&self) -> Result<GenOptions> {
        // Written so that NaN fails too.
        let valid = self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0;
        if !valid {
            bail!("--temperature must be ≥ 0 and --top-p in (0, 1]");
        }
        Ok(GenOptions {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
            batch: 1,
        })
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run_generate(a: GenerateArgs) -> Result<()> {
    let options = a.sampling.options()?;
    let pre = a.model.load()?;
    let text = if a.chat {
        let template = pre.chat_template.as_ref().context(NO_TEMPLATE)?;
        let mut messages: Vec<Message> = a.system.iter().map(|s| Message::new("system", s)).collect();
        messages.push(Message::new("user", &a.prompt));
        template.render(&messages, true)?
    } else {
        a.prompt.clone()
    };
    let ids = pre.tokenizer.encode(&text, true)?;
    let mut printed = 0;
    let stdout = std::io::stdout();
    let out = generate(&pre, &[ids], &options, |_, g, _| {
        let text = &g.text;
        // Stream only text that can no longer change (a stop string may still cut the tail).
        let safe = text.len().saturating_sub(options.stop.iter().map(String::len).max().unwrap_or(0));
        let safe = (0..=safe).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        if safe > printed {
            let _ = write!(stdout.lock(), "{}", &text[printed..safe]);
            let _ = stdout.lock().flush();
            printed = safe;
        }
    })?;
    let g = &out[0];
    // The text only grows (complete characters), so what was printed is a prefix of it.
    println!("{}", g.text.get(printed..).unwrap_or_default());
    if g.finish == Finish::Length {
        eprintln!("(stopped at --max-new-tokens {})", options.max_new_tokens);
    }
    Ok(())
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// An interactive conversation on stdin/stdout. `/reset` forgets the history, `/exit` (or end
/// of input) quits; a failing turn is reported and the conversation goes on.
pub fn run_chat(a: ChatArgs) -> Result<()> {
    let options = a.sampling.options()?;
    let pre = a.model.load()?;
    let template = pre.chat_template.as_ref().context(NO_TEMPLATE)?;
    let start: Vec<Message> = a.system.iter().map(|s| Message::new("system", s)).collect();
    let mut history = start.clone();
    eprintln!("keel chat: {} — /reset starts over, /exit quits", a.model.model.display());
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("cannot read the input: {e}");
                continue;
            }
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = start.clone();
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", line));
        let turn = (|| -> Result<String> {
            let ids = pre.tokenizer.encode(&template.render(&history, true)?, true)?;
            Ok(generate(&pre, &[ids], &options, |_, _, _| {})?.remove(0).text)
        })();
        match turn {
            Ok(reply) => {
                println!("{reply}");
                history.push(Message::new("assistant", &reply));
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#} (the conversation goes on; /reset to start over)");
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The GGUF file to convert (or a Hub model, hf:ORG/NAME[@REVISION], to store as f32).
    gguf: PathBuf,
    /// The Hugging Face directory to write (weights as f32 safetensors, config.json,
    /// tokenizer.json, tokenizer_config.json with the chat template).
    out_dir: PathBuf,
}

pub fn run_convert(a: ConvertArgs) -> Result<()> {
    if !a.gguf.is_file() && HubModel::from_path(&a.gguf).is_none() {
        bail!("{} is not a file (keel convert reads a GGUF file)", a.gguf.display());
    }
    let pre = Pretrained::load(&a.gguf)?;
    pre.save_hf(&a.out_dir)?;
    eprintln!("wrote {} ({} parameters, f32)", a.out_dir.display(), pre.model.layout.total);
    Ok(())
}

/// How `keel export` stores weight matrices.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StorageType {
    /// Exact (4 bytes per weight).
    F32,
    /// Half precision (2 bytes).
    F16,
    /// llama.cpp's 8-bit blocks of 32 (1.06 bytes).
    #[value(name = "q8_0")]
    Q8_0,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The model to export: a GGUF file, a Hugging Face directory (a `keel train` run's final/,
    /// a `keel merge` output) or a Hub model (hf:ORG/NAME[@REVISION]).
    model: PathBuf,
    /// The GGUF file to write (the architecture's metadata, tokenizer, chat template).
    #[arg(long)]
    gguf: PathBuf,
    /// How weight matrices are stored; norms stay f32.
    #[arg(long = "type", value_enum, default_value_t = StorageType::F16)]
    storage: StorageType,
    /// A LoRA adapter directory (PEFT layout) merged into the weights first.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

pub fn run_export(a: ExportArgs) -> Result<()> {
    use keel_model::gguf_write::ExportType;
    let mut pre = Pretrained::load(&a.model)?;
    if let Some(dir) = &a.adapter {
        pre.model.lora = Some(keel_model::lora::LoraAdapter::load(dir, &pre.model.config)?);
        pre.model.merge_lora();
    }
    let kind = match a.storage {
        StorageType::F32 => ExportType::F32,
        StorageType::F16 => ExportType::F16,
        StorageType::Q8_0 => ExportType::Q8_0,
    };
    let name = match HubModel::from_path(&a.model) {
        Some(hub) => hub?.name().to_string(),
        None => a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    pre.save_gguf(&a.gguf, kind, &name).with_context(|| format!("cannot export {} to GGUF", a.model.display()))?;
    let bytes = std::fs::metadata(&a.gguf).map(|m| m.len()).unwrap_or(0);
    eprintln!("wrote {} ({:.1} MB, {:?} matrices)", a.gguf.display(), bytes as f64 / 1e6, a.storage);
    Ok(())
}
