#!/usr/bin/env python3
"""Generate transformers + PEFT LoRA fixtures for keel's model tests.

A tiny random Llama (float32, eager attention, plain RoPE) with a rank-4 LoRA
adapter on every projection. Writes ``crates/keel-model/tests/fixtures/lora/``:

* ``base/config.json``, ``base/model.safetensors`` -- the base model, via
  ``save_pretrained``;
* ``adapter/adapter_config.json``, ``adapter/adapter_model.safetensors`` -- the
  adapter, via ``PeftModel.save_pretrained``, with both ``lora_A`` and
  ``lora_B`` drawn from N(0, 0.1) (PEFT's zero ``lora_B`` would zero the
  ``lora_A`` gradients);
* ``batch.safetensors`` -- the batch of ``make_parity_fixtures.py``: int64
  ``input_ids``, ``attention_mask``, ``position_ids``, ``labels``, all ``[3, 11]``;
* ``reference.safetensors`` -- f32 ``logits`` ``[B, T, V]``, ``loss`` ``[1]``
  and ``grad.<name>`` for every trainable (LoRA) parameter, named as in
  ``adapter_model.safetensors``;
* ``merged_logits.safetensors`` -- f32 ``logits`` of
  ``merge_and_unload()`` on the batch.

Everything is seeded and single-threaded, so re-running gives byte-identical
files. Regenerate with::

    python tools/make_lora_fixtures.py

Check that an adapter directory written by keel loads in PEFT on top of
``lora/base`` and reproduces the reference logits (exit 1 on mismatch, 2 on
unusable input)::

    python tools/make_lora_fixtures.py --verify-adapter DIR
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig

from make_parity_fixtures import (
    INIT_STD,
    VERIFY_ATOL,
    forward,
    load_model,
    make_batch,
    reinitialise,
    save_model,
    shifted_mean_ce,
)

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "crates/keel-model/tests/fixtures/lora"
BASE_DIR = FIXTURE_DIR / "base"
ADAPTER_DIR = FIXTURE_DIR / "adapter"

SEED = 2001
LORA_SEED = 2002
ADAPTER_NAME = "default"

RANK = 4
ALPHA = 8
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base_config() -> LlamaConfig:
    """The llama_untied_rope3 parity architecture with plain RoPE (theta 1e4)."""
    return LlamaConfig(
        hidden_size=96, num_attention_heads=6, num_key_value_heads=3, intermediate_size=80,
        vocab_size=89, tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5,
        num_hidden_layers=2, attn_implementation="eager",
    )


def lora_config() -> LoraConfig:
    return LoraConfig(
        r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGET_MODULES,
        bias="none", task_type="CAUSAL_LM",
    )


# ---------------------------------------------------------------- model setup


def build_base() -> torch.nn.Module:
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(base_config(), dtype=torch.float32)
    reinitialise(model)
    return model.eval()


def build_peft_model(base: torch.nn.Module) -> PeftModel:
    """Wrap `base` in a fresh LoRA adapter with lora_A and lora_B ~ N(0, 0.1)."""
    model = get_peft_model(base, lora_config())
    generator = torch.Generator().manual_seed(LORA_SEED)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                param.normal_(0.0, INIT_STD, generator=generator)
            elif param.requires_grad:
                raise AssertionError(f"base parameter {name} is trainable")
    check_scaling(model)
    return model.eval()


def check_scaling(model: PeftModel) -> None:
    """Every adapted projection must use scale alpha / r (no rsLoRA, DoRA or fan-in/fan-out)."""
    adapted = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if len(adapted) != len(TARGET_MODULES) * model.config.num_hidden_layers:
        raise AssertionError(f"expected one adapter per target projection, found {len(adapted)}")
    for module in adapted:
        if (module.scaling[ADAPTER_NAME] != ALPHA / RANK or module.use_rslora[ADAPTER_NAME]
                or module.use_dora[ADAPTER_NAME] or module.fan_in_fan_out):
            raise AssertionError(f"unexpected LoRA variant in {type(module).__name__}")


def saved_name(param_name: str) -> str:
    """PEFT's in-memory name -> its adapter_model.safetensors key (the adapter name is dropped)."""
    return param_name.replace(f".{ADAPTER_NAME}.", ".")


def trainable_names(model: PeftModel) -> list[str]:
    return [saved_name(name) for name, param in model.named_parameters() if param.requires_grad]


def save_adapter(model: PeftModel, out_dir: Path) -> None:
    model.save_pretrained(out_dir)
    (out_dir / "README.md").unlink()  # PEFT's generated model card
    # PEFT writes target_modules in set order, which varies with the string hash seed.
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    saved = set(load_file(out_dir / "adapter_model.safetensors"))
    if saved != set(trainable_names(model)):
        raise AssertionError(f"saved tensors differ from the trainable parameters: {sorted(saved)}")


def load_peft_model(adapter_dir: Path) -> PeftModel:
    """Apply `adapter_dir` to the fixture base, refusing adapters with missing or extra tensors."""
    model = PeftModel.from_pretrained(load_model(BASE_DIR), adapter_dir)
    with safe_open(adapter_dir / "adapter_model.safetensors", "pt") as stored:
        saved = set(stored.keys())
    expected = {saved_name(name) for name, _ in model.named_parameters() if ".lora_" in name}
    if saved != expected:
        raise ValueError(f"missing tensors {sorted(expected - saved)}, unexpected tensors {sorted(saved - expected)}")
    return model.eval()


# ----------------------------------------------------------------- references


def reference_tensors(model: PeftModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    output = forward(model, batch)
    torch.testing.assert_close(output.loss, shifted_mean_ce(output.logits, batch["labels"]))
    output.loss.backward()
    tensors = {
        "logits": output.logits.detach().contiguous(),
        "loss": output.loss.detach().reshape(1),
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            if param.grad is not None:
                raise AssertionError(f"frozen parameter {name} received a gradient")
            continue
        grad = param.grad
        if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
            raise AssertionError(f"parameter {name} has a missing, non-finite or zero gradient")
        tensors[f"grad.{saved_name(name)}"] = grad.detach().contiguous()
    return tensors


def merged_logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model = load_peft_model(ADAPTER_DIR).merge_and_unload()
    with torch.no_grad():
        return forward(model, batch, with_labels=False).logits.contiguous()


def generate() -> None:
    shutil.rmtree(FIXTURE_DIR / "base", ignore_errors=True)
    shutil.rmtree(FIXTURE_DIR / "adapter", ignore_errors=True)
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)

    save_model(build_base(), BASE_DIR)
    batch = make_batch(base_config().vocab_size, SEED)
    save_file(batch, FIXTURE_DIR / "batch.safetensors")

    # An in-memory base keeps the fixture path out of adapter_config.json's
    # base_model_name_or_path; verify_adapter below checks it against the saved base.
    model = build_peft_model(build_base())
    save_adapter(model, ADAPTER_DIR)
    reference = reference_tensors(model, batch)
    save_file(reference, FIXTURE_DIR / "reference.safetensors")

    merged = merged_logits(batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(merged[real], reference["logits"][real], rtol=0, atol=VERIFY_ATOL)
    save_file({"logits": merged}, FIXTURE_DIR / "merged_logits.safetensors")

    if verify_adapter(ADAPTER_DIR) != 0:
        raise AssertionError("the saved adapter does not reproduce the reference logits")
    print_summary(reference)


def print_summary(reference: dict[str, torch.Tensor]) -> None:
    grads = [t for key, t in reference.items() if key.startswith("grad.")]
    n_values = sum(t.numel() for t in grads)
    sizes = {str(path.relative_to(FIXTURE_DIR)): path.stat().st_size
             for path in sorted(FIXTURE_DIR.rglob("*")) if path.is_file()}
    total_kb = sum(sizes.values()) / 1024
    print(f"lora: {len(grads)} trainable params ({n_values} values), "
          f"loss {reference['loss'].item():.6f}, total {total_kb:.1f} KB")
    for file_name, size in sizes.items():
        print(f"    {file_name:<36} {size / 1024:8.1f} KB")


# --------------------------------------------------------------------- verify


def verify_adapter(adapter_dir: Path) -> int:
    required = [adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"]
    missing = [str(path) for path in required if not path.is_file()]
    if missing:
        print("error: missing files:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2

    try:
        model = load_peft_model(adapter_dir)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        print(f"error: {adapter_dir} does not load in PEFT: {err}", file=sys.stderr)
        return 2

    batch = load_file(FIXTURE_DIR / "batch.safetensors")
    expected = load_file(FIXTURE_DIR / "reference.safetensors")["logits"]
    with torch.no_grad():
        actual = forward(model, batch, with_labels=False).logits
    real = batch["attention_mask"].bool()
    max_abs = (actual[real] - expected[real]).abs().max().item()
    print(f"lora: {adapter_dir} max abs diff {max_abs:.3e} (over {int(real.sum())} unpadded positions)")
    if max_abs > VERIFY_ATOL:
        print(f"FAIL: max abs diff exceeds {VERIFY_ATOL:g}", file=sys.stderr)
        return 1
    print("OK")
    return 0


# ----------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify-adapter", type=Path, metavar="DIR", help="check a keel-saved adapter directory")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    if args.verify_adapter is not None:
        return verify_adapter(args.verify_adapter)
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
