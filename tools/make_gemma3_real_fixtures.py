#!/usr/bin/env python3
"""Generate reference outputs of the real Gemma-3-270M (base) model.

Loads ``models/gemma-3-270m.Q4_K_M.gguf`` (fetched by
``scripts/fetch-model.sh gemma3-270m``) with transformers -- dequantized to
float32, eager attention, one CPU thread -- and writes
``crates/keel-model/tests/fixtures/gemma3/``:

* ``paris.safetensors`` -- int64 ``input_ids`` ``[1, T]``: ``<bos>`` followed by
  "Paris is the capital and largest city of"; f32 ``logits`` ``[1, vocab]``:
  the logits at the last position only.
* ``long.safetensors`` -- the same for a fixed numbered text (``long_text()``,
  also stored in the file's metadata under ``text``) of 600-700 tokens: longer
  than the 512-token sliding window, so the local layers' window decides these
  logits. The script checks that disabling the window changes them.
* ``greedy.json`` -- the Paris prompt and ids and its greedy continuation
  (``max_new_tokens=16``, ``do_sample=False``) as ids and decoded text.
* ``tokens.json`` -- for a few short texts (digits, accents, Chinese, emoji,
  code, runs of spaces, newlines), the ids transformers' GGUF tokenizer gives
  without special tokens, their pieces, and the ids decoded again.

The GGUF holds no Gemma-3-specific hyperparameters beyond the sliding window
size; the rest (a full-attention layer every 6th layer, local rope base
10000, ``query_pre_attn_scalar`` 256, no softcapping) are transformers'
``Gemma3TextConfig`` defaults, which match Gemma-3-270M. llama.cpp's converter
stores every RMSNorm weight as ``1 + w`` and does not permute Q/K rows for
gemma3 (its RoPE is the NEOX, rotate-half kind); ``check_layout`` confirms on
layer 0 that transformers undoes the first and needs nothing for the second.
The tokenizer is transformers' rebuild of Gemma's from the GGUF vocabulary;
``tokens.json`` pins what it does, not what SentencePiece does.

Rerunning gives byte-identical files. Regenerate with (loads the 270M model and
rebuilds the 262k-token tokenizer, a few minutes on one core)::

    scripts/fetch-model.sh gemma3-270m
    python tools/make_gemma3_real_fixtures.py
"""

import json
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
GGUF_NAME = "gemma-3-270m.Q4_K_M.gguf"
OUT_DIR = REPO_ROOT / "crates/keel-model/tests/fixtures/gemma3"

PROMPT = "Paris is the capital and largest city of"
MAX_NEW_TOKENS = 16
LONG_TOKENS = (600, 700)
TOKEN_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "12345",
    "café naïve",
    "巴黎是法国的首都",
    "😀🎉",
    "def f(x):\n    return x**2",
    "  a  b ",
    "first line\nsecond line\n\n\nfifth line\n",
    "tab\tseparated\t\tvalues",
]

# Distinct sentences, cycled and numbered, so the text is long without being one
# sentence over and over.
SENTENCES = [
    "The river runs past the old mill and under the stone bridge.",
    "Traders in the market square sell bread, cheese, apples and wool.",
    "In winter the lake freezes and children skate on it after school.",
    "The library keeps maps of the valley drawn more than two centuries ago.",
    "A narrow road climbs from the village to the monastery on the hill.",
    "Every spring the town holds a fair with music, games and a parade.",
    "The baker opens his shop before dawn and closes it at noon.",
    "Farmers bring their sheep down from the high pastures in autumn.",
]
LONG_SENTENCE_COUNT = 38


def long_text() -> str:
    return " ".join(f"{i + 1}. {SENTENCES[i % len(SENTENCES)]}" for i in range(LONG_SENTENCE_COUNT))


def load():
    tokenizer = AutoTokenizer.from_pretrained(MODELS_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        MODELS_DIR, gguf_file=GGUF_NAME, dtype=torch.float32, attn_implementation="eager"
    )
    return tokenizer, model.eval()


def check_layout(model) -> None:
    """Layer 0 as loaded: Q/K/V and the FFN are the GGUF tensors as stored (no row permutation),
    and every norm is the GGUF weight minus 1 (the converter stored ``1 + w``)."""
    tensors = {t.name: t for t in GGUFReader(MODELS_DIR / GGUF_NAME).tensors}
    layer = model.model.layers[0]
    same = {
        "blk.0.attn_q.weight": layer.self_attn.q_proj,
        "blk.0.attn_k.weight": layer.self_attn.k_proj,
        "blk.0.attn_v.weight": layer.self_attn.v_proj,
        "blk.0.attn_output.weight": layer.self_attn.o_proj,
        "blk.0.ffn_down.weight": layer.mlp.down_proj,
    }
    minus_one = {
        "blk.0.attn_norm.weight": layer.input_layernorm,
        "blk.0.post_attention_norm.weight": layer.post_attention_layernorm,
        "blk.0.ffn_norm.weight": layer.pre_feedforward_layernorm,
        "blk.0.post_ffw_norm.weight": layer.post_feedforward_layernorm,
        "blk.0.attn_q_norm.weight": layer.self_attn.q_norm,
        "blk.0.attn_k_norm.weight": layer.self_attn.k_norm,
        "output_norm.weight": model.model.norm,
    }
    for name, module in {**same, **minus_one}.items():
        info = tensors[name]
        loaded = module.weight.detach()
        if loaded.dtype != torch.float32:
            raise AssertionError(f"{name} loaded as {loaded.dtype}, not dequantized to float32")
        stored = dequantize(info.data, info.tensor_type).reshape(loaded.shape).astype(np.float32)
        expected = stored - np.float32(1) if name in minus_one else stored
        if not np.array_equal(loaded.numpy(), expected):
            raise AssertionError(f"{name} is not loaded as expected from the GGUF tensor")


def last_logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids).logits[:, -1, :].contiguous()


def set_sliding_window(model, window: int) -> None:
    model.config.sliding_window = window
    for layer in model.model.layers:
        if layer.self_attn.sliding_window is not None:
            layer.self_attn.sliding_window = window


def main() -> None:
    torch.set_num_threads(1)
    tokenizer, model = load()
    check_layout(model)
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    # add_bos_token is set in the GGUF, so the tokenizer puts <bos> first.
    input_ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    if input_ids[0, 0].item() != tokenizer.bos_token_id:
        raise AssertionError("the prompt does not start with <bos>")
    logits = last_logits(model, input_ids)
    save_file({"input_ids": input_ids.contiguous(), "logits": logits}, OUT_DIR / "paris.safetensors")
    with torch.no_grad():
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    generated = output[0, input_ids.shape[1]:].tolist()
    if generated[0] != int(logits.argmax()):
        raise AssertionError("generate's first token is not the argmax of the forward pass")
    greedy = {
        "prompt": PROMPT,
        "input_ids": input_ids[0].tolist(),
        "max_new_tokens": MAX_NEW_TOKENS,
        "generated_ids": generated,
        "generated_text": tokenizer.decode(generated, skip_special_tokens=False),
    }
    write_json(OUT_DIR / "greedy.json", greedy)

    text = long_text()
    long_ids = tokenizer(text, return_tensors="pt")["input_ids"]
    window = model.config.sliding_window
    if not (LONG_TOKENS[0] <= long_ids.shape[1] <= LONG_TOKENS[1] and long_ids.shape[1] > window):
        raise AssertionError(f"the long text is {long_ids.shape[1]} tokens, not within {LONG_TOKENS}")
    long_logits = last_logits(model, long_ids)
    set_sliding_window(model, 1 << 20)
    unwindowed = last_logits(model, long_ids)
    set_sliding_window(model, window)
    window_effect = float((long_logits - unwindowed).abs().max())
    if window_effect < 1e-2:
        raise AssertionError(f"the sliding window barely matters here (max |diff| {window_effect})")
    save_file({"input_ids": long_ids.contiguous(), "logits": long_logits}, OUT_DIR / "long.safetensors", {"text": text})

    tokens = []
    for sample in TOKEN_TEXTS:
        ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
        tokens.append(
            {
                "text": sample,
                "ids": ids,
                "pieces": tokenizer.convert_ids_to_tokens(ids),
                "decoded": tokenizer.decode(ids),
            }
        )
    write_json(OUT_DIR / "tokens.json", {"add_special_tokens": False, "samples": tokens})

    print(f"greedy: {greedy['generated_text']!r}")
    print(f"long: {long_ids.shape[1]} tokens; disabling the {window}-token window moves the logits by up to {window_effect:.3f}")
    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.relative_to(REPO_ROOT)}")


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
