#!/usr/bin/env python3
"""Reference greedy answers and their decoded text beyond ASCII (issue 15).

Loads the GGUF in ``models/`` with transformers (float32, eager attention, one thread), asks
SmolLM2-135M-Instruct a chat question in Chinese, Japanese, emoji, accented French and code,
generates greedily (``max_new_tokens=40``, ``do_sample=False``) and writes
``crates/keel-infer/tests/fixtures/decode_reference.json``: per case the user message, the
rendered prompt's ids, the generated ids (the end-of-turn id, if reached, is left out) and
``tokenizer.decode(ids, skip_special_tokens=True)``.

keel's test generates from the same prompt ids and checks the ids, the decoded text and the
streamed text against these.

The prompts avoid digits: transformers' GGUF tokenizer lacks SmolLM2's digit split (see
``make_tokenizer_fixtures.py``). Rerunning gives the same file. Run with::

    python tools/make_decode_fixtures.py
"""

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = REPO_ROOT / "crates/keel-infer/tests/fixtures/decode_reference.json"
MAX_NEW_TOKENS = 40

QUESTIONS = [
    "请用中文介绍一下巴黎。",
    "東京について日本語で教えてください。",
    "Write three emoji that describe happiness, only emoji.",
    "Écris une phrase en français sur la crème brûlée et le café.",
    "Write a Rust function that prints the Greek letter lambda and an arrow.",
]


def main() -> None:
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(MODELS_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        MODELS_DIR, gguf_file=GGUF_NAME, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    cases = []
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = output[0, input_ids.shape[1]:].tolist()
        if end_of_turn in generated:
            generated = generated[: generated.index(end_of_turn)]
        cases.append(
            {
                "question": question,
                "input_ids": input_ids[0].tolist(),
                "generated_ids": generated,
                "text": tokenizer.decode(generated, skip_special_tokens=True),
            }
        )
        print(repr(cases[-1]["text"]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fixture = {"max_new_tokens": MAX_NEW_TOKENS, "cases": cases}
    OUT.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUT.stat().st_size} bytes  {OUT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
