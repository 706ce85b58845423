#!/usr/bin/env python3
"""llama.cpp's view of GGUF files written by ``keel export`` (issue 14's oracle).

Loads each exported file in llama.cpp (``llama-cpp-python`` from PyPI, which builds llama.cpp
from source: about ten minutes here), tokenizes a few prompts with the file's own vocabulary
and generates greedily, then writes ``crates/keel-infer/tests/fixtures/llama_cpp_export.json``.
keel's test exports the same model the same way and checks that keel tokenizes the prompts to
the same ids and continues them with the same tokens.

    target/release/keel export models/SmolLM2-135M-Instruct.Q4_1.gguf --gguf /tmp/keel-f32.gguf --type f32
    target/release/keel export models/SmolLM2-135M-Instruct.Q4_1.gguf --gguf /tmp/keel-q8_0.gguf --type q8_0
    python tools/make_llama_cpp_fixtures.py /tmp/keel-f32.gguf /tmp/keel-q8_0.gguf
"""

import json
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "crates/keel-infer/tests/fixtures/llama_cpp_export.json"
NEW_TOKENS = 16

CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPTS = [
    CHAT.format("What is the capital of France?"),
    CHAT.format("What is 12 + 345?"),
    CHAT.format("请用中文介绍一下巴黎。"),
]


def run(path: str) -> dict:
    llm = Llama(model_path=path, n_ctx=512, n_threads=1, seed=0, verbose=False)
    cases = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        out = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if token == llm.token_eos() or len(out) == NEW_TOKENS:
                break
            out.append(token)
        cases.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": out})
        print(path, repr(llm.detokenize(out).decode("utf-8", "replace")))
    return {"file": Path(path).name, "cases": cases}


def main() -> None:
    files = sys.argv[1:]
    if not files:
        sys.exit(__doc__)
    fixture = {"llama_cpp_python": llama_cpp.__version__, "new_tokens": NEW_TOKENS, "exports": [run(f) for f in files]}
    OUT.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUT.stat().st_size} bytes  {OUT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
