#!/usr/bin/env python3
"""Reference greedy generations and scores for GSM8K, scored as lm-evaluation-harness does.

Loads a transformers checkpoint of SmolLM2-135M-Instruct (float32, eager
attention, ``torch.set_num_threads(1)``), generates answers for a fixed subset
of 100 questions -- the first 100 lines of ``../shared/data/gsm8k/test.jsonl`` --
and writes ``crates/keel-eval/tests/fixtures/gsm8k_reference.json``.

One CPU thread is used so that the run leaves a core free for other work. The
thread count only changes the order of float32 reductions inside matmuls, which
does not change the greedy result meaningfully (at worst a near-tie argmax flips
on a rare token); the count used is recorded as ``torch_threads`` in the
fixture, alongside the torch/transformers versions.

Generation:

* prompt = ``tokenizer.apply_chat_template([{"role": "user", "content": question}],
  tokenize=False, add_generation_prompt=True)``, encoded with
  ``add_special_tokens=False`` (SmolLM2's tokenizer adds no BOS either way; the
  script asserts that).
* ``model.generate(ids, max_new_tokens=256, do_sample=False)`` (256 is keel's
  gsm8k default), one prompt at a time, no padding; generation stops at eos
  (``<|im_end|>``, id 2) only -- no other stop strings. ``output_ids`` are the
  new tokens (including the eos when one was produced); ``output`` decodes them
  with ``skip_special_tokens=True``.

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

Regenerate (100 greedy generations of up to 256 tokens; measured: 19,051 new
tokens, 66 items ending at eos and 34 at the 256-token cap, 1537 s -- about
26 min, 6-21 s per item -- on one thread of a 2-core machine that was also
running other work). Generation is greedy, so a rerun with the same torch build
and thread count should reproduce the fixture; as a check on threads, the
12 answers of the earlier 2-thread, 128-token fixture were exact prefixes of the
1-thread, 256-token answers. Run it in the background, e.g.::

    nohup python tools/make_gsm8k_reference.py [/tmp/smollm2-hf] > /tmp/gsm8k_ref.log 2>&1 &

Progress is printed per item (index, new tokens, seconds). The fixture is
written compactly: one JSON object per item on its own line, so 100 items with
prompt and output token ids stay at a few hundred KB.
"""

import argparse
import json
import re
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = REPO_ROOT / "../shared/data/gsm8k/test.jsonl"
OUT_FILE = REPO_ROOT / "crates/keel-eval/tests/fixtures/gsm8k_reference.json"

N_ITEMS = 100
MAX_NEW_TOKENS = 256
NUM_THREADS = 1
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


def dump_compact(reference):
    """Top-level keys one per line, each item as one compact JSON line."""
    lines = ["{"]
    for key, value in reference.items():
        if key != "items":
            lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    lines.append(' "items": [')
    for i, item in enumerate(reference["items"]):
        sep = "," if i + 1 < len(reference["items"]) else ""
        lines.append("  " + json.dumps(item, ensure_ascii=False, separators=(",", ":")) + sep)
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == reference
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default="/tmp/smollm2-hf")
    args = parser.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(NUM_THREADS)
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
        item_start = time.perf_counter()
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
        print(f"[{index + 1}/{len(docs)}] item {index}: {len(output_ids)} tokens, "
              f"{time.perf_counter() - item_start:.1f} s, strict={strict!r} flexible={flexible!r} "
              f"gold={normalize(doc['answer'])!r}", flush=True)

    strict_match = sum(it["strict_correct"] for it in items) / len(items)
    flexible_match = sum(it["flexible_correct"] for it in items) / len(items)
    reference = {
        "n": len(items),
        "max_new_tokens": MAX_NEW_TOKENS,
        "torch_threads": NUM_THREADS,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "strict_match": strict_match,
        "flexible_match": flexible_match,
        "items": items,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(dump_compact(reference), encoding="utf-8")

    print(f"wrote {OUT_FILE.relative_to(REPO_ROOT)}")
    print(f"strict_match = {strict_match:.4f}  flexible_match = {flexible_match:.4f}  over {len(items)} items")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
