//! LoRA adapters on the projection matrices: configuration, parameters in PEFT's layout (save,
//! load) and merging into the base weights.

use crate::config::ModelConfig;
use crate::params::{LayerRanges, TensorSpec};
use crate::rng::Rng;
use crate::safetensors::{write_f32, SafeTensors};
use crate::transformer::Transformer;
use anyhow::{bail, ensure, Context, Result};
use keel_kernels::gemm::gemm_strided_scaled;
use keel_kernels::lora::{lora_backward, lora_forward};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// The projections an adapter can attach to, with their Hugging Face module names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// Query projection, `self_attn.q_proj`.
    Q,
    /// Key projection, `self_attn.k_proj`.
    K,
    /// Value projection, `self_attn.v_proj`.
    V,
    /// Attention output projection, `self_attn.o_proj`.
    O,
    /// MLP gate projection (the SiLU branch), `mlp.gate_proj`.
    Gate,
    /// MLP up projection, `mlp.up_proj`.
    Up,
    /// MLP down projection, `mlp.down_proj`.
    Down,
}

impl Module {
    /// Every module in layer order (attention, then MLP); indexes [`LoraAdapter::slots`].
    pub const ALL: [Module; 7] = [Module::Q, Module::K, Module::V, Module::O, Module::Gate, Module::Up, Module::Down];

    /// The Hugging Face / PEFT module name, e.g. `q_proj`.
    pub fn name(self) -> &'static str {
        match self {
            Module::Q => "q_proj",
            Module::K => "k_proj",
            Module::V => "v_proj",
            Module::O => "o_proj",
            Module::Gate => "gate_proj",
            Module::Up => "up_proj",
            Module::Down => "down_proj",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Module::Q | Module::K | Module::V | Module::O => "self_attn",
            _ => "mlp",
        }
    }

    /// Parses a PEFT `target_modules` name such as `q_proj`.
    pub fn from_name(s: &str) -> Result<Self> {
        Module::ALL.into_iter().find(|m| m.name() == s).with_context(|| {
            format!(
                "unknown LoRA target module \"{s}\" (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
            )
        })
    }

    /// (in, out) features.
    pub fn dims(self, c: &ModelConfig) -> (usize, usize) {
        let (h, qw, kw, f) =
            (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
        match self {
            Module::Q => (h, qw),
            Module::K | Module::V => (h, kw),
            Module::O => (qw, h),
            Module::Gate | Module::Up => (h, f),
            Module::Down => (f, h),
        }
    }

    /// The base weight this module adapts.
    pub fn base_range(self, r: &LayerRanges) -> Range<usize> {
        match self {
            Module::Q => r.q.clone(),
            Module::K => r.k.clone(),
            Module::V => r.v.clone(),
            Module::O => r.o.clone(),
            Module::Gate => r.gate.clone(),
            Module::Up => r.up.clone(),
            Module::Down => r.down.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
/// LoRA hyperparameters, as in PEFT's `adapter_config.json`.
pub struct LoraConfig {
    /// Rank `r` of each update `B·A`; positive.
    pub rank: usize,
    /// `lora_alpha`: the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Probability of zeroing each input element of `A` (inverted dropout), in [0, 1); 0 when omitted.
    pub dropout: f64,
    /// Projections adapted in every layer; at least one.
    pub targets: Vec<Module>,
}

impl LoraConfig {
    /// The multiplier `alpha / rank` applied to `B·A·x`.
    pub fn scale(&self) -> f32 {
        (self.alpha / self.rank as f64) as f32
    }
}

/// The ranges of one projection's `A` and `B`, where it is adapted.
pub type Slot = Option<(Range<usize>, Range<usize>)>;

/// An adapter's parameters (one flat buffer) and where each `A` and `B` lives.
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    /// The hyperparameters.
    pub config: LoraConfig,
    /// Every `A` and `B` with its PEFT name, shape and range in `params`; per layer, the `A`s
    /// precede the `B`s.
    pub tensors: Vec<TensorSpec>,
    /// Per layer, per [`Module::ALL`] index: the ranges of `A` `[r × in]` and `B` `[out × r]`.
    pub slots: Vec<[Slot; 7]>,
    /// Every `A` and `B`, back to back, f32.
    pub params: Vec<f32>,
    /// Seeds the dropout masks of the next forward/backward (set per micro-batch).
    pub dropout_key: u64,
}

fn peft_name(layer: usize, m: Module, which: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{}.lora_{which}.weight", m.path(), m.name())
}

impl LoraAdapter {
    /// A fresh adapter as PEFT initialises one: `A` Kaiming-uniform (bound 1/√in), `B` zero.
    pub fn new(model: &ModelConfig, config: LoraConfig, seed: u64) -> Result<Self> {
        ensure!(config.rank > 0, "LoRA rank must be positive");
        ensure!(!config.targets.is_empty(), "LoRA needs at least one target module");
        ensure!((0.0..1.0).contains(&config.dropout), "LoRA dropout must lie in [0, 1)");
        // Before the loop below allocates: a typo such as r = 1e12 must not abort the process.
        let per_layer = config.targets.iter().fold(0u128, |sum, m| {
            let (n_in, n_out) = m.dims(model);
            sum.saturating_add(crate::limits::product(&[config.rank, n_in.saturating_add(n_out)]))
        });
        crate::limits::ensure_fits(
            per_layer.saturating_mul(model.num_layers as u128).saturating_mul(4),
            format_args!("a LoRA adapter of rank {}", config.rank),
        )?;
        let mut tensors = Vec::new();
        let mut total = 0;
        let mut slots = Vec::new();
        for l in 0..model.num_layers {
            // A layer's `A` matrices first, in module order, then its `B`s: projections that read
            // the same input (q/k/v, gate/up) then have their `A`s stacked, one product for all.
            let targeted: Vec<(usize, Module)> =
                Module::ALL.into_iter().enumerate().filter(|(_, m)| config.targets.contains(m)).collect();
            let mut a_ranges = Vec::new();
            for &(_, m) in &targeted {
                let (n_in, _) = m.dims(model);
                let a = total..total + config.rank * n_in;
                total = a.end;
                tensors.push(TensorSpec {
                    name: peft_name(l, m, "A"),
                    shape: vec![config.rank, n_in],
                    range: a.clone(),
                });
                a_ranges.push(a);
            }
            let mut row: [Slot; 7] = Default::default();
            for (&(i, m), a) in targeted.iter().zip(a_ranges) {
                let (_, n_out) = m.dims(model);
                let b = total..total + n_out * config.rank;
                total = b.end;
                tensors.push(TensorSpec {
                    name: peft_name(l, m, "B"),
                    shape: vec![n_out, config.rank],
                    range: b.clone(),
                });
                row[i] = Some((a, b));
            }
            slots.push(row);
        }
        let mut params = vec![0.0f32; total];
        let mut rng = Rng::new(seed);
        for t in tensors.iter().filter(|t| t.name.contains("lora_A")) {
            let bound = 1.0 / (t.shape[1] as f64).sqrt();
            params[t.range.clone()].iter_mut().for_each(|p| *p = ((2.0 * rng.uniform() - 1.0) * bound) as f32);
        }
        Ok(LoraAdapter { config, tensors, slots, params, dropout_key: 0 })
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` as PEFT does.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tensors: Vec<(&str, &[usize], &[f32])> =
            self.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice(), &self.params[t.range.clone()])).collect();
        write_f32(&dir.join("adapter_model.safetensors"), &tensors, &HashMap::from([("format".into(), "pt".into())]))?;
        let c = &self.config;
        let cfg = json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": c.rank, "lora_alpha": c.alpha, "lora_dropout": c.dropout,
            "target_modules": c.targets.iter().map(|m| m.name()).collect::<Vec<_>>(), "bias": "none",
            "fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "inference_mode": true,
            "init_lora_weights": true, "modules_to_save": null,
        });
        let path = dir.join("adapter_config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&cfg)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads a PEFT adapter directory for a model with config `model`.
    pub fn load(dir: &Path, model: &ModelConfig) -> Result<Self> {
        let path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        let config = parse_config(&v).with_context(|| format!("in {}", path.display()))?;
        let mut adapter = Self::new(model, config, 0)?;
        let st = SafeTensors::open(&dir.join("adapter_model.safetensors"))?;
        for t in &adapter.tensors {
            let e = st.get(&t.name).with_context(|| format!("{}: tensor {} is missing", dir.display(), t.name))?;
            ensure!(
                e.shape == t.shape,
                "{}: tensor {} has shape {:?}, expected {:?}",
                dir.display(),
                t.name,
                e.shape,
                t.shape
            );
            st.read_f32(&t.name, &mut adapter.params[t.range.clone()])?;
        }
        if let Some(extra) = st.names().find(|n| !adapter.tensors.iter().any(|t| t.name == *n)) {
            bail!("{}: tensor {extra} is not part of this adapter", dir.display());
        }
        Ok(adapter)
    }

    /// `W += s · B·A` for every adapted projection of `params` (a base model's flat weights).
    pub fn merge_into(&self, layers: &[LayerRanges], params: &mut [f32], model: &ModelConfig) {
        let s = self.config.scale();
        for (l, row) in self.slots.iter().enumerate() {
            for (i, slot) in row.iter().enumerate() {
                let Some((a, b)) = slot else { continue };
                let m = Module::ALL[i];
                let (n_in, n_out) = m.dims(model);
                let w = m.base_range(&layers[l]);
                keel_kernels::gemm::gemm_strided_scaled(
                    false,
                    false,
                    n_out,
                    n_in,
                    self.config.rank,
                    s,
                    &self.params[b.clone()],
                    self.config.rank,
                    &self.params[a.clone()],
                    n_in,
                    1.0,
                    &mut params[w],
                    n_in,
                );
            }
        }
    }
}

fn parse_config(v: &Value) -> Result<LoraConfig> {
    if v.get("peft_type").and_then(Value::as_str).is_some_and(|t| t != "LORA") {
        bail!("peft_type {} is not LORA", v["peft_type"]);
    }
    for key in ["use_rslora", "use_dora", "fan_in_fan_out"] {
        if v.get(key).and_then(Value::as_bool) == Some(true) {
            bail!("\"{key}\": true is not supported");
        }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if v.get(key).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            bail!("a per-module \"{key}\" is not supported");
        }
    }
    if v.get("layers_to_transform").is_some_and(|x| !x.is_null()) {
        bail!("\"layers_to_transform\" is not supported (keel adapts every layer)");
    }
    if v.get("bias").and_then(Value::as_str).is_some_and(|b| b != "none") {
        bail!("LoRA bias \"{}\" is not supported (only none)", v["bias"]);
    }
    let targets = match v.get("target_modules") {
        Some(Value::Array(a)) => {
            a.iter().map(|m| Module::from_name(m.as_str().unwrap_or_default())).collect::<Result<Vec<_>>>()?
        }
        Some(Value::String(s)) if s == "all-linear" => Module::ALL.to_vec(),
        other => bail!("target_modules must be a list of module names, found {other:?}"),
    };
    Ok(LoraConfig {
        rank: v.get("r").and_then(Value::as_u64).context("missing \"r\"")? as usize,
        alpha: v.get("lora_alpha").and_then(Value::as_f64).context("missing \"lora_alpha\"")?,
        dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        targets,
    })
}

// The adapter inside the engine's forward and backward: what a block calls for its projections.

impl Transformer {
    /// Adds the adapters of `modules` of layer `l` (projections that all read `x`) to their
    /// outputs `ys`: as one stacked product when [`Self::lora_group`] allows, else one by one.
    /// `u` keeps each projection's `x·Aᵀ` for the backward. A no-op without an adapter.
    pub(crate) fn lora_forward_modules(
        &self,
        l: usize,
        modules: &[Module],
        ys: &mut [&mut [f32]],
        x: &[f32],
        u: &mut [Vec<f32>; 7],
        x_drop: &mut Vec<f32>,
    ) {
        if self.lora.is_none() {
            return;
        }
        if let Some(group) = self.lora_group(l, modules).filter(|_| modules.len() > 1) {
            self.lora_group_forward(&group, ys, x, &mut u[modules[0] as usize]);
        } else {
            for (&m, y) in modules.iter().zip(ys.iter_mut()) {
                self.lora_forward_into(l, m, y, x, &mut u[m as usize], x_drop);
            }
        }
    }

    /// Backward of [`Self::lora_forward_modules`]: adapter gradients into `grads` (the
    /// adapter's layout) and the input gradient added to `dx`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lora_backward_modules(
        &self,
        l: usize,
        modules: &[Module],
        dx: &mut [f32],
        dys: &[&[f32]],
        x: &[f32],
        u: &[Vec<f32>; 7],
        grads: &mut [f32],
        s: &mut LoraScratch,
    ) {
        if self.lora.is_none() {
            return;
        }
        if let Some(group) = self.lora_group(l, modules).filter(|_| modules.len() > 1) {
            self.lora_group_backward(&group, dx, dys, x, &u[modules[0] as usize], grads, s.du);
        } else {
            for (&m, dy) in modules.iter().zip(dys) {
                self.lora_backward_into(l, m, dx, dy, x, &u[m as usize], grads, s);
            }
        }
    }

    /// Adds the adapter's part of projection `m` of layer `l` to `y` (a no-op without one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lora_forward_into(
        &self,
        l: usize,
        m: Module,
        y: &mut [f32],
        x: &[f32],
        u: &mut Vec<f32>,
        x_drop: &mut Vec<f32>,
    ) {
        let Some(lora) = &self.lora else { return };
        let Some((a, b)) = &lora.slots[l][m as usize] else { return };
        let (n_in, n_out) = m.dims(&self.config);
        let (rank, rows) = (lora.config.rank, x.len() / n_in);
        u.resize(rows * rank, 0.0);
        let input = if lora.config.dropout > 0.0 {
            dropout(x_drop, x, lora, l, m);
            &x_drop[..]
        } else {
            x
        };
        lora_forward(
            y,
            u,
            input,
            &lora.params[a.clone()],
            &lora.params[b.clone()],
            n_in,
            n_out,
            rank,
            lora.config.scale(),
        );
    }

    /// Projections of layer `l` that read the same input (q/k/v, gate/up) and whose adapters can
    /// run as one: every one adapted, no dropout, and their `A` matrices back to back in the
    /// adapter's buffer (as [`LoraAdapter::new`] lays them out). Then `x` is multiplied by the
    /// stacked `A` once instead of once per projection.
    fn lora_group(&self, l: usize, modules: &[Module]) -> Option<LoraGroup> {
        let lora = self.lora.as_ref().filter(|a| a.config.dropout == 0.0)?;
        let slots: Vec<_> = modules.iter().map(|&m| lora.slots[l][m as usize].clone()).collect::<Option<_>>()?;
        let contiguous = slots.windows(2).all(|w| w[0].0.end == w[1].0.start);
        contiguous.then(|| LoraGroup {
            a: slots[0].0.start..slots[slots.len() - 1].0.end,
            members: modules.iter().zip(slots).map(|(&m, (_, b))| (m.dims(&self.config).1, b)).collect(),
            n_in: modules[0].dims(&self.config).0,
        })
    }

    /// `u = x·[A₁; A₂; …]ᵀ` (kept for the backward) and `yᵢ += s · uᵢ·Bᵢᵀ`, `uᵢ` being `u`'s
    /// columns of member `i`.
    fn lora_group_forward(&self, g: &LoraGroup, ys: &mut [&mut [f32]], x: &[f32], u: &mut Vec<f32>) {
        let lora = self.lora.as_ref().expect("a group implies an adapter");
        let (rank, scale, width) = (lora.config.rank, lora.config.scale(), g.members.len() * lora.config.rank);
        let rows = x.len() / g.n_in;
        u.resize(rows * width, 0.0);
        gemm_strided_scaled(
            false,
            true,
            rows,
            width,
            g.n_in,
            1.0,
            x,
            g.n_in,
            &lora.params[g.a.clone()],
            g.n_in,
            0.0,
            u,
            width,
        );
        for (i, ((n_out, b), y)) in g.members.iter().zip(ys.iter_mut()).enumerate() {
            gemm_strided_scaled(
                false,
                true,
                rows,
                *n_out,
                rank,
                scale,
                &u[i * rank..],
                width,
                &lora.params[b.clone()],
                rank,
                1.0,
                y,
                *n_out,
            );
        }
    }

    /// Backward of [`Self::lora_group_forward`]: `dBᵢ += s·dyᵢᵀ·uᵢ`, `du = s·[dy₁·B₁, …]`, then
    /// one product each for `dA += duᵀ·x` and `dx += du·A`.
    #[allow(clippy::too_many_arguments)]
    fn lora_group_backward(
        &self,
        g: &LoraGroup,
        dx: &mut [f32],
        dys: &[&[f32]],
        x: &[f32],
        u: &[f32],
        grads: &mut [f32],
        du: &mut Vec<f32>,
    ) {
        let lora = self.lora.as_ref().expect("a group implies an adapter");
        let (rank, scale, width) = (lora.config.rank, lora.config.scale(), g.members.len() * lora.config.rank);
        let rows = x.len() / g.n_in;
        du.resize(rows * width, 0.0);
        for (i, ((n_out, b), dy)) in g.members.iter().zip(dys).enumerate() {
            gemm_strided_scaled(
                true,
                false,
                *n_out,
                rank,
                rows,
                scale,
                dy,
                *n_out,
                &u[i * rank..],
                width,
                1.0,
                &mut grads[b.clone()],
                rank,
            );
            gemm_strided_scaled(
                false,
                false,
                rows,
                rank,
                *n_out,
                scale,
                dy,
                *n_out,
                &lora.params[b.clone()],
                rank,
                0.0,
                &mut du[i * rank..],
                width,
            );
        }
        gemm_strided_scaled(
            true,
            false,
            width,
            g.n_in,
            rows,
            1.0,
            du,
            width,
            x,
            g.n_in,
            1.0,
            &mut grads[g.a.clone()],
            g.n_in,
        );
        gemm_strided_scaled(
            false,
            false,
            rows,
            g.n_in,
            width,
            1.0,
            du,
            width,
            &lora.params[g.a.clone()],
            g.n_in,
            1.0,
            dx,
            g.n_in,
        );
    }

    /// Backward of [`Self::lora_forward_into`]: adapter gradients into `grads` (the adapter's
    /// layout) and the input gradient added to `dx`.
    #[allow(clippy::too_many_arguments)]
    fn lora_backward_into(
        &self,
        l: usize,
        m: Module,
        dx: &mut [f32],
        dy: &[f32],
        x: &[f32],
        u: &[f32],
        grads: &mut [f32],
        s: &mut LoraScratch,
    ) {
        let Some(lora) = &self.lora else { return };
        let Some((a, b)) = &lora.slots[l][m as usize] else { return };
        let (n_in, n_out) = m.dims(&self.config);
        let (rank, rows) = (lora.config.rank, x.len() / n_in);
        s.du.resize(rows * rank, 0.0);
        let (lo, hi) = grads.split_at_mut(b.start);
        let (da, db) = (&mut lo[a.clone()], &mut hi[..b.len()]);
        let (pa, pb, scale) = (&lora.params[a.clone()], &lora.params[b.clone()], lora.config.scale());
        if lora.config.dropout > 0.0 {
            // dropout(x)·… : the input gradient passes through the same mask.
            dropout(s.x, x, lora, l, m);
            s.dx.clear();
            s.dx.resize(rows * n_in, 0.0);
            lora_backward(s.dx, da, db, s.du, dy, s.x, u, pa, pb, n_in, n_out, rank, scale);
            dropout(s.x, &s.dx[..], lora, l, m);
            dx.iter_mut().zip(s.x.iter()).for_each(|(d, &g)| *d += g);
        } else {
            lora_backward(dx, da, db, s.du, dy, x, u, pa, pb, n_in, n_out, rank, scale);
        }
    }
}

/// Adapted projections that share an input: their stacked `A` (one range of the adapter's
/// buffer), and per member its output width and `B` range.
struct LoraGroup {
    a: std::ops::Range<usize>,
    members: Vec<(usize, std::ops::Range<usize>)>,
    n_in: usize,
}

/// Scratch for the LoRA backward, borrowed from the workspace.
pub(crate) struct LoraScratch<'w> {
    pub(crate) du: &'w mut Vec<f32>,
    pub(crate) x: &'w mut Vec<f32>,
    pub(crate) dx: &'w mut Vec<f32>,
}

/// `out = x ⊙ mask / keep` with a mask drawn from a hash of (dropout key, layer, module, index):
/// the backward regenerates the same mask instead of storing it.
fn dropout(out: &mut Vec<f32>, x: &[f32], lora: &LoraAdapter, l: usize, m: Module) {
    let keep = 1.0 - lora.config.dropout;
    let inv = (1.0 / keep) as f32;
    let base = lora.dropout_key ^ ((l as u64) << 48) ^ ((m as u64) << 40);
    out.resize(x.len(), 0.0);
    out.par_iter_mut().zip(x.par_iter()).enumerate().for_each(|(i, (o, &v))| {
        let mut z = base.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
        *o = if u < keep { v * inv } else { 0.0 };
    });
}
