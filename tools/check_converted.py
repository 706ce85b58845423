#!/usr/bin/env python3
"""Checks that a directory written by `keel convert` loads in transformers and behaves as the
GGUF model does: next-token logits on the fixture prompt (crates/keel-model/tests/fixtures/
smollm2/france.safetensors, made from the GGUF by tools/make_real_model_fixtures.py), the greedy
answer, tokenizer ids on the tokenizer fixture corpus, and the chat template's rendering.

    target/release/keel convert models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
    python3 tools/check_converted.py /tmp/smollm2-hf

Exits 1 on any mismatch.
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(out_dir):
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    ref = load_file(ROOT / "crates/keel-model/tests/fixtures/smollm2/france.safetensors")
    greedy = json.loads((ROOT / "crates/keel-model/tests/fixtures/smollm2/greedy.json").read_text())
    failures = []

    prompt = tok.apply_chat_template(greedy["messages"], tokenize=False, add_generation_prompt=True)
    if prompt != greedy["prompt"]:
        failures.append(f"chat template renders {prompt!r}")
    ids = tok(prompt, return_tensors="pt").input_ids
    if not torch.equal(ids, ref["input_ids"]):
        failures.append(f"prompt ids {ids.tolist()}")
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    diff = (logits - ref["logits"][0]).abs().max().item()
    scale = ref["logits"].abs().max().item()
    print(f"next-token logits: max abs diff {diff:.3e} (largest logit {scale:.1f})")
    if diff > 1e-4 * scale:
        failures.append(f"logits differ by {diff}")
    out = model.generate(ids, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    print(f"greedy answer: {answer!r}")
    if "Paris" not in answer:
        failures.append(f"answer {answer!r}")

    cases = json.loads((ROOT / "crates/keel-data/tests/fixtures/tokenizer_cases.json").read_text())
    for case in cases:
        got = tok(case["text"]).input_ids
        if got != case["ids"]:
            failures.append(f"tokenizer ids of {case['text']!r}: {got} vs {case['ids']}")
    print(f"tokenizer: {len(cases) - sum('tokenizer ids' in f for f in failures)}/{len(cases)} corpus strings match")

    for f in failures:
        print("MISMATCH:", f)
    print("OK" if not failures else "FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
