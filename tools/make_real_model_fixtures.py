#!/usr/bin/env python3
"""Generate reference logits of the real SmolLM2-135M-Instruct model.

Loads the GGUF in ``models/`` (fetched by ``scripts/fetch-model.sh``) with
transformers -- dequantized to float32, eager attention, one CPU thread -- and
writes ``crates/keel-model/tests/fixtures/smollm2/``:

* ``france.safetensors`` -- int64 ``input_ids`` ``[1, T]``: the SmolLM2 chat
  template applied to one user turn, "What is the capital of France?", with
  ``add_generation_prompt=True``; f32 ``logits`` ``[1, vocab]``: the logits at
  the last position only.
* ``greedy.json`` -- the prompt text and ids and the greedy continuation
  (``max_new_tokens=24``, ``do_sample=False``, stopping at ``<|im_end|>``) as
  ids and decoded text.

llama.cpp's converter permutes the rows of Q and K for its RoPE layout;
transformers undoes that when it loads a llama GGUF, and ``check_qk_layout``
confirms it on layer 0 before anything is written. The prompt contains no
digits, so transformers' GGUF tokenizer (which lacks SmolLM2's digit split, see
``make_tokenizer_fixtures.py``) tokenizes it exactly as SmolLM2 does.

Rerunning gives byte-identical files. Regenerate with (loads the 135M model,
takes about a minute on one core)::

    python tools/make_real_model_fixtures.py
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
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR = REPO_ROOT / "crates/keel-model/tests/fixtures/smollm2"

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_NEW_TOKENS = 24


def load():
    tokenizer = AutoTokenizer.from_pretrained(MODELS_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        MODELS_DIR, gguf_file=GGUF_NAME, dtype=torch.float32, attn_implementation="eager"
    )
    return tokenizer, model.eval()


def llama_cpp_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """The row permutation llama.cpp's convert_hf_to_gguf.py applies to Q and K."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def check_qk_layout(model) -> None:
    """Layer-0 q_proj/k_proj must be the GGUF tensors with llama.cpp's permutation undone."""
    reader = GGUFReader(MODELS_DIR / GGUF_NAME)
    tensors = {t.name: t for t in reader.tensors}
    config = model.config
    attention = model.model.layers[0].self_attn
    for gguf_name, projection, n_head in (
        ("blk.0.attn_q.weight", attention.q_proj, config.num_attention_heads),
        ("blk.0.attn_k.weight", attention.k_proj, config.num_key_value_heads),
    ):
        info = tensors[gguf_name]
        stored = dequantize(info.data, info.tensor_type).reshape(projection.weight.shape)
        loaded = projection.weight.detach().numpy()
        if not np.array_equal(llama_cpp_permute(loaded, n_head), stored) or np.array_equal(loaded, stored):
            raise AssertionError(f"{gguf_name} is not loaded as the un-permuted GGUF tensor")


def main() -> None:
    torch.set_num_threads(1)
    tokenizer, model = load()
    check_qk_layout(model)

    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        last_logits = model(input_ids).logits[:, -1, :].contiguous()
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    generated = output[0, input_ids.shape[1]:].tolist()
    if generated[0] != int(last_logits.argmax()):
        raise AssertionError("generate's first token is not the argmax of the forward pass")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": input_ids.contiguous(), "logits": last_logits}, OUT_DIR / "france.safetensors")
    greedy = {
        "messages": MESSAGES,
        "prompt": prompt,
        "input_ids": input_ids[0].tolist(),
        "max_new_tokens": MAX_NEW_TOKENS,
        "generated_ids": generated,
        "generated_text": tokenizer.decode(generated, skip_special_tokens=False),
        "generated_text_skip_special": tokenizer.decode(generated, skip_special_tokens=True),
    }
    (OUT_DIR / "greedy.json").write_text(json.dumps(greedy, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(repr(greedy["generated_text"]))
    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
