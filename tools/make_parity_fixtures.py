#!/usr/bin/env python3
"""Generate Hugging Face parity fixtures for keel's model tests.

For each variant (a tiny random Llama / Mistral / Qwen2 / Qwen3 / Gemma 3
text model in float32, eager attention) this writes
``crates/keel-model/tests/fixtures/parity/<variant>/``:

* ``config.json``, ``model.safetensors`` -- the model, via ``save_pretrained``;
* ``batch.safetensors`` -- int64 ``input_ids``, ``attention_mask``,
  ``position_ids``, ``labels``, all ``[3, 11]`` (unpadded, right-padded and
  left-padded rows);
* ``reference.safetensors`` -- f32 ``logits`` ``[B, T, V]``, ``loss`` ``[1]``
  and ``grad.<name>`` for every entry of ``model.named_parameters()``;
* ``adamw.json`` -- losses and pre-clip gradient norms of a 10-step AdamW run
  on the same batch, starting from the saved weights.

Everything is seeded and single-threaded, so re-running gives byte-identical
files. Regenerate all fixtures (or one) with::

    python tools/make_parity_fixtures.py [--variant NAME]

Check that a directory written by keel loads in transformers and reproduces a
variant's reference logits (exit 1 on mismatch, 2 on unusable input)::

    python tools/make_parity_fixtures.py --verify-saved DIR --variant NAME
"""

import argparse
import copy
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
    Qwen3Config,
)

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "crates/keel-model/tests/fixtures/parity"

# Batch layout: one (left_pad, real, right_pad) triple per row.
ROW_LAYOUT = [(0, 11, 0), (0, 7, 4), (3, 8, 0)]
PAD_ID = 0
FIRST_REAL_ID = 3
PROMPT_LEN = 3
IGNORE_INDEX = -100

INIT_STD = 0.1
NORM_JITTER = 0.1
# A Gemma 3 feature is exercised if getting it wrong moves some unpadded logit by at least this.
MIN_FEATURE_EFFECT = 1e-2

LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.1
MAX_GRAD_NORM = 1.0
TRAIN_STEPS = 10

VERIFY_ATOL = 1e-5
REL_DIFF_FLOOR = 1e-6


@dataclass(frozen=True)
class Variant:
    name: str
    seed: int
    config: PretrainedConfig


def variants() -> dict[str, Variant]:
    common = dict(num_hidden_layers=2, attn_implementation="eager")
    # With head_dim 16 and theta 5e5 the RoPE wavelengths are 6.3, 32.6, 169, ...;
    # original_max 64 (high/low-freq cutoffs 16 and 64) keeps the first,
    # smooths the second and divides the rest by `factor`.
    llama3_rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    all_variants = [
        Variant("llama_tied", 1001, LlamaConfig(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=112,
            vocab_size=101, tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-5,
            **common)),
        Variant("llama_untied_rope3", 1002, LlamaConfig(
            hidden_size=96, num_attention_heads=6, num_key_value_heads=3, intermediate_size=80,
            vocab_size=89, tie_word_embeddings=False, rope_scaling=llama3_rope, rms_norm_eps=1e-5,
            **common)),
        Variant("mistral_hd24", 1003, MistralConfig(
            hidden_size=144, num_attention_heads=6, num_key_value_heads=3, head_dim=24,
            intermediate_size=100, vocab_size=97, tie_word_embeddings=False, sliding_window=None,
            rms_norm_eps=1e-6, **common)),
        Variant("qwen2_bias_tied", 1004, Qwen2Config(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            vocab_size=103, tie_word_embeddings=True, use_sliding_window=False, rms_norm_eps=1e-6,
            **common)),
        Variant("qwen3_qknorm", 1005, Qwen3Config(
            hidden_size=96, num_attention_heads=6, num_key_value_heads=3, head_dim=24,
            intermediate_size=80, vocab_size=97, tie_word_embeddings=False, attention_bias=False,
            use_sliding_window=False, rms_norm_eps=1e-6, **common)),
        # Gemma 3 text: layers 0-2 sliding (window 4 < 11 tokens, RoPE base 1e4), layer 3 global
        # (base 1e6); attention scale query_pre_attn_scalar**-0.5 = 20**-0.5, not head_dim**-0.5.
        Variant("gemma3_swa", 1006, Gemma3TextConfig(
            hidden_size=40, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
            intermediate_size=72, vocab_size=97, num_hidden_layers=4,
            layer_types=["sliding_attention"] * 3 + ["full_attention"], sliding_window=4,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
            query_pre_attn_scalar=20, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            final_logit_softcapping=None, attn_logit_softcapping=None, max_position_embeddings=128,
            rms_norm_eps=1e-6, attn_implementation="eager")),
    ]
    return {v.name: v for v in all_variants}


def fixture_dir(variant_name: str) -> Path:
    return FIXTURE_ROOT / variant_name


# ---------------------------------------------------------------- model setup


def zero_centred_norm(module: torch.nn.Module) -> bool:
    """Gemma's RMSNorm scales by (1 + weight), so its identity weight is 0, not 1."""
    return type(module).__name__.startswith("Gemma") and type(module).__name__.endswith("RMSNorm")


def reinitialise(model: torch.nn.Module) -> None:
    """Linear/embedding parameters ~ N(0, 0.1); RMSNorm scales = 1 + 0.1 * randn.

    The scale is the weight itself for Llama-style norms and 1 + weight for Gemma's, whose
    weight is therefore 0.1 * randn: treating it as the scale would then give wildly uneven
    per-channel scales, which no later norm can hide.
    """
    seen = set()
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if id(param) in seen:  # tied lm_head shares the embedding
                    continue
                seen.add(id(param))
                if zero_centred_norm(module):
                    param.copy_(NORM_JITTER * torch.randn_like(param))
                elif type(module).__name__.endswith("RMSNorm"):
                    param.copy_(1.0 + NORM_JITTER * torch.randn_like(param))
                elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                    param.normal_(0.0, INIT_STD)
                else:
                    raise TypeError(f"no init rule for {module_name}.{param_name} ({type(module).__name__})")


def check_rope_scaling(model: torch.nn.Module) -> None:
    """llama3 RoPE must keep, smooth and fully scale at least one inverse frequency each."""
    rope = model.config.rope_parameters
    if rope.get("rope_type") != "llama3":  # also skips per-layer-type (nested) RoPE parameters
        return
    inv_freq = model.model.rotary_emb.inv_freq
    head_dim = 2 * inv_freq.numel()
    unscaled = 1.0 / rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ratio = unscaled / inv_freq
    kept = torch.isclose(ratio, torch.tensor(1.0))
    scaled = torch.isclose(ratio, torch.tensor(rope["factor"]))
    smoothed = ~(kept | scaled)
    if not (kept.any() and scaled.any() and smoothed.any()):
        raise AssertionError(f"llama3 RoPE does not exercise every branch: unscaled/scaled = {ratio.tolist()}")


def build_model(variant: Variant) -> torch.nn.Module:
    torch.manual_seed(variant.seed)
    model = AutoModelForCausalLM.from_config(variant.config, dtype=torch.float32)
    reinitialise(model)
    check_rope_scaling(model)
    return model.eval()


def save_model(model: torch.nn.Module, out_dir: Path) -> None:
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "generation_config.json").unlink(missing_ok=True)


def load_model(model_dir: Path) -> torch.nn.Module:
    """Load a checkpoint, refusing any that leaves parameters missing or unused."""
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    problems = {key: value for key, value in info.items() if value}
    if problems:
        raise ValueError(f"{model_dir} does not load cleanly: {problems}")
    return model.eval()


# ---------------------------------------------------------------------- batch


def make_batch(vocab_size: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for left_pad, real, right_pad in ROW_LAYOUT:
        tokens = torch.randint(FIRST_REAL_ID, vocab_size, (real,), generator=generator)
        pads = (torch.full((left_pad,), PAD_ID), torch.full((right_pad,), PAD_ID))
        mask = torch.cat([torch.zeros(left_pad), torch.ones(real), torch.zeros(right_pad)])
        rows.append((torch.cat([pads[0], tokens, pads[1]]), mask.long()))
    input_ids = torch.stack([ids for ids, _ in rows])
    attention_mask = torch.stack([mask for _, mask in rows])
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    supervised = (attention_mask == 1) & (position_ids >= PROMPT_LEN)
    labels = torch.where(supervised, input_ids, IGNORE_INDEX)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "labels": labels,
    }


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], with_labels: bool = True):
    inputs = batch if with_labels else {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs, use_cache=False)


def shifted_mean_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss definition the fixtures assume: logits[:, t] predicts labels[:, t + 1]."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
    )


# ----------------------------------------------------------------- references


def reference_tensors(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    output = forward(model, batch)
    torch.testing.assert_close(output.loss, shifted_mean_ce(output.logits, batch["labels"]))
    output.loss.backward()
    tensors = {
        "logits": output.logits.detach().contiguous(),
        "loss": output.loss.detach().reshape(1),
    }
    for name, param in model.named_parameters():
        grad = param.grad
        if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
            raise AssertionError(f"parameter {name} has a missing, non-finite or zero gradient")
        tensors[f"grad.{name}"] = grad.detach().contiguous()
    return tensors


def unpadded_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return forward(model, batch, with_labels=False).logits[batch["attention_mask"].bool()]


def check_padding_invariance(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Each row run alone, without its pads, gives the same logits as in the padded batch."""
    padded = unpadded_logits(model, batch)
    alone = []
    for mask, ids in zip(batch["attention_mask"], batch["input_ids"]):
        real = ids[mask.bool()][None]
        single = {"input_ids": real, "attention_mask": torch.ones_like(real),
                  "position_ids": torch.arange(real.shape[1])[None]}
        alone.append(unpadded_logits(model, single))
    torch.testing.assert_close(padded, torch.cat(alone), rtol=1e-5, atol=1e-5)


def _swap_rope_bases(model: torch.nn.Module) -> None:
    rotary = model.model.rotary_emb
    local, full = rotary.sliding_attention_inv_freq.clone(), rotary.full_attention_inv_freq.clone()
    rotary.sliding_attention_inv_freq.copy_(full)
    rotary.full_attention_inv_freq.copy_(local)


def _norm_scale_is_weight(model: torch.nn.Module) -> None:
    for module in model.modules():
        if zero_centred_norm(module):
            module.weight.sub_(1.0)  # (1 + w) -> w: what a Llama-style norm would compute


def _head_dim_attention_scale(model: torch.nn.Module) -> None:
    for layer in model.model.layers:
        layer.self_attn.scaling = layer.self_attn.head_dim ** -0.5


# What a Gemma 3 implementation could get wrong: feature -> (the mistake, how to make it). Each
# mistake must visibly change the fixture's logits.
GEMMA3_FEATURES = {
    "sliding window": ("none", lambda m: setattr(m.config, "sliding_window", 1 << 20)),
    "global layer index": ("first, not last", lambda m: setattr(m.config, "layer_types", m.config.layer_types[::-1])),
    "RoPE bases": ("local and global swapped", _swap_rope_bases),
    "RMSNorm scale": ("w, not 1 + w", _norm_scale_is_weight),
    "attention scale": ("head_dim**-0.5, not query_pre_attn_scalar**-0.5", _head_dim_attention_scale),
    "embedding scale": ("1, not sqrt(hidden_size)", lambda m: m.model.embed_tokens.embed_scale.fill_(1.0)),
}


def check_features(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Get each architecture feature wrong in turn: the unpadded logits must move."""
    if model.config.model_type != "gemma3_text":
        return
    reference = unpadded_logits(model, batch)
    for feature, (mistake, make_mistake) in GEMMA3_FEATURES.items():
        broken = copy.deepcopy(model)
        with torch.no_grad():
            make_mistake(broken)
        effect = (unpadded_logits(broken, batch) - reference).abs().max().item()
        print(f"    {feature} {mistake}: logits move by up to {effect:.3g}")
        if effect < MIN_FEATURE_EFFECT:
            raise AssertionError(f"the fixture does not exercise the {feature} (logits move by {effect:.3g})")


def adamw_run(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict:
    params = list(model.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim == 1]
    assert len(decay) + len(no_decay) == len(params)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR, betas=BETAS, eps=EPS,
    )
    losses, grad_norms = [], []
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = forward(model, batch).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm=MAX_GRAD_NORM)
        optimizer.step()
        losses.append(loss.item())
        grad_norms.append(grad_norm.item())
    return {
        "lr": LR,
        "betas": list(BETAS),
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "decay_rule": "ndim>=2",
        "max_grad_norm": MAX_GRAD_NORM,
        "losses": losses,
        "grad_norms": grad_norms,
    }


def generate(variant: Variant) -> None:
    out_dir = fixture_dir(variant.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)

    save_model(build_model(variant), out_dir)
    batch = make_batch(variant.config.vocab_size, variant.seed)
    save_file(batch, out_dir / "batch.safetensors")

    reference = reference_tensors(load_model(out_dir), batch)
    save_file(reference, out_dir / "reference.safetensors")
    check_padding_invariance(load_model(out_dir), batch)
    check_features(load_model(out_dir), batch)

    adamw = adamw_run(load_model(out_dir), batch)
    (out_dir / "adamw.json").write_text(json.dumps(adamw, indent=2) + "\n")

    print_summary(variant.name, out_dir, reference, adamw)


def print_summary(name: str, out_dir: Path, reference: dict[str, torch.Tensor], adamw: dict) -> None:
    grads = [t for key, t in reference.items() if key.startswith("grad.")]
    n_values = sum(t.numel() for t in grads)
    sizes = {path.name: path.stat().st_size for path in sorted(out_dir.iterdir())}
    total_kb = sum(sizes.values()) / 1024
    print(f"{name}: {len(grads)} params ({n_values} values), loss {reference['loss'].item():.6f}, "
          f"loss after {TRAIN_STEPS} AdamW steps {adamw['losses'][-1]:.6f}, total {total_kb:.1f} KB")
    for file_name, size in sizes.items():
        print(f"    {file_name:<24} {size / 1024:8.1f} KB")


# --------------------------------------------------------------------- verify


def verify_saved(saved_dir: Path, variant_name: str) -> int:
    reference_dir = fixture_dir(variant_name)
    required = [saved_dir / "config.json", reference_dir / "batch.safetensors", reference_dir / "reference.safetensors"]
    missing = [str(path) for path in required if not path.is_file()]
    if not any(saved_dir.glob("*.safetensors")) and not (saved_dir / "model.safetensors.index.json").is_file():
        missing.append(f"{saved_dir}/*.safetensors")
    if missing:
        print("error: missing files:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2

    try:
        model = load_model(saved_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    batch = load_file(reference_dir / "batch.safetensors")
    expected = load_file(reference_dir / "reference.safetensors")["logits"]
    with torch.no_grad():
        actual = forward(model, batch, with_labels=False).logits
    if actual.shape != expected.shape:
        print(f"error: logits shape {tuple(actual.shape)} != reference {tuple(expected.shape)}", file=sys.stderr)
        return 2

    real = batch["attention_mask"].bool()
    abs_diff = (actual[real] - expected[real]).abs()
    rel_diff = abs_diff / expected[real].abs().clamp(min=REL_DIFF_FLOOR)
    max_abs, max_rel = abs_diff.max().item(), rel_diff.max().item()
    print(f"{variant_name}: {saved_dir} max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} "
          f"(over {int(real.sum())} unpadded positions)")
    if max_abs > VERIFY_ATOL:
        print(f"FAIL: max abs diff exceeds {VERIFY_ATOL:g}", file=sys.stderr)
        return 1
    print("OK")
    return 0


# ----------------------------------------------------------------------- main


def main() -> int:
    known = variants()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(known), help="only this variant (required with --verify-saved)")
    parser.add_argument("--verify-saved", type=Path, metavar="DIR", help="check a keel-saved model directory")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    if args.verify_saved is not None:
        if args.variant is None:
            parser.error("--verify-saved needs --variant")
        return verify_saved(args.verify_saved, args.variant)

    for name in [args.variant] if args.variant else known:
        generate(known[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
