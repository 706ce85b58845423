#!/usr/bin/env python3
"""Reference greedy generations and scores for GSM8K, scored as lm-evaluation-harness does.

Loads a transformers checkpoint of SmolLM2-135M-Instruct (float32, eager
attention, two CPU threads), generates answers for the first 12 items of
``../shared/data/gsm8k/test.jsonl`` and writes
``crates/keel-eval/tests/fixtures/gsm8k_reference.json``.

Generation:

* prompt = ``tokenizer.apply_chat_template([{"role": "user", "content": question}],
  tokenize=False, add_generation_prompt=True)``, encoded with
  ``add_special_tokens=False`` (SmolLM2's tokenizer adds no BOS either way; the
  script asserts that).
* ``model.generate(ids, max_new_tokens=128, do_sample=False)``, one prompt at a
  time, no padding; generation stops at eos (``<|im_end|>``, id 2) only -- no
  other stop strings. ``output_ids`` are the new tokens (including the eos when
  one was produced); ``output`` decodes them with ``skip_special_tokens=True``.

Scoring follows lm-evaluation-harness ``lm_eval/tasks/gsm8k/gsm8k.yaml`` and
``lm_eval/filters/extraction.py`` (``RegexFilter``):

* ``strict``: first match of ``#### (\\-?[0-9\\.\\,]+)``;
  ``flexible``: last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, taking the first
  non-empty group. Matches are stripped; no match gives ``"[invalid]"``.
* ``exact_match`` with ``regexes_to_ignore = [",", "\\$", "(?s).*#### ", "\\.$"]``
  applied in that order with ``re.sub`` to both prediction and the full
  reference answer, then ``ignore_case`` (lower-casing both), then equality.

The checkpoint comes from keel's converter::

    cargo build --release
    ./target/release/keel convert models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf

Regenerate (12 greedy generations of up to 128 tokens: about 100 s on two
idle cores, much longer on busy ones; rerunning gives identical bytes)::

    python tools/make_gsm8k_reference.py [/tmp/smollm2-hf]
"""

import argparse
import json
import re
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = REPO_ROOT / "../shared/data/gsm8k/test.jsonl"
OUT_FILE = REPO_ROOT / "crates/keel-eval/tests/fixtures/gsm8k_reference.json"

N_ITEMS = 12
MAX_NEW_TOKENS = 128
EOS_ID = 2

STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
REGEXES_TO_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]
FALLBACK = "[invalid]"


def regex_extract(regex, text, group_select):
    """lm-eval's ``RegexFilter`` on one response."""
    matches = regex.findall(text)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        nonempty = [m for m in match if m]
        match = nonempty[0] if nonempty else FALLBACK
    return match.strip()


def normalize(text):
    """lm-eval's ``exact_match`` preprocessing (ignore_case, regexes_to_ignore)."""
    for pattern in REGEXES_TO_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def exact_match(prediction, reference):
    return normalize(prediction) == normalize(reference)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default="/tmp/smollm2-hf")
    args = parser.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == EOS_ID

    with open(DATA_FILE, encoding="utf-8") as f:
        docs = [json.loads(line) for line, _ in zip(f, range(N_ITEMS))]
    assert len(docs) == N_ITEMS

    items = []
    for index, doc in enumerate(docs):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": doc["question"]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        assert tokenizer.encode(prompt) == prompt_ids, "tokenizer adds special tokens"
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                eos_token_id=EOS_ID,
                pad_token_id=EOS_ID,
            )
        output_ids = out[0, len(prompt_ids):].tolist()
        if EOS_ID in output_ids:  # batch of one: nothing after eos, but be explicit
            output_ids = output_ids[: output_ids.index(EOS_ID) + 1]
        output = tokenizer.decode(output_ids, skip_special_tokens=True)
        strict = regex_extract(STRICT_RE, output, 0)
        flexible = regex_extract(FLEXIBLE_RE, output, -1)
        items.append({
            "index": index,
            "question": doc["question"],
            "prompt_ids": prompt_ids,
            "output_ids": output_ids,
            "output": output,
            "strict": strict,
            "flexible": flexible,
            "strict_correct": exact_match(strict, doc["answer"]),
            "flexible_correct": exact_match(flexible, doc["answer"]),
        })
        print(f"[{index}] {len(output_ids)} tokens, strict={strict!r} flexible={flexible!r} "
              f"gold={normalize(doc['answer'])!r}", flush=True)

    strict_match = sum(it["strict_correct"] for it in items) / len(items)
    flexible_match = sum(it["flexible_correct"] for it in items) / len(items)
    reference = {
        "n": len(items),
        "max_new_tokens": MAX_NEW_TOKENS,
        "items": items,
        "strict_match": strict_match,
        "flexible_match": flexible_match,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"wrote {OUT_FILE.relative_to(REPO_ROOT)}")
    print(f"strict_match = {strict_match:.4f}  flexible_match = {flexible_match:.4f}  over {len(items)} items")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
