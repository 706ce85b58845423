#!/usr/bin/env python3
"""Reference partial scores for Winogrande-style items, computed as lm-evaluation-harness does.

Scores the hand-made items of ``crates/keel-eval/tests/fixtures/winogrande/winogrande.jsonl``
(Winogrande as llm-foundry publishes it: ``context_options``, ``continuation``, ``gold``) with a
transformers checkpoint of SmolLM2-135M-Instruct and writes ``reference.json`` beside them.

lm-evaluation-harness's winogrande task is a multiple-choice task with several inputs
(``doc_to_text`` gives the gold index, ``doc_to_choice`` the contexts, ``doc_to_target`` the
shared continuation); ``ConfigurableTask.construct_requests`` then asks, for each context,
``loglikelihood(context, target_delimiter + continuation)`` with the default delimiter ``" "``.
``acc`` is ``argmax(lls) == gold``. The pair encoding, the forward pass and ``argmax`` are those
of ``make_eval_fixtures.py`` (lm-eval's ``_encode_pair`` and ``_loglikelihood_tokens``).

    ./target/release/keel convert models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
    python tools/make_winogrande_fixture.py [/tmp/smollm2-hf]

Rerunning gives identical bytes.
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from make_eval_fixtures import argmax, encode_pair, loglikelihood

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "crates/keel-eval/tests/fixtures/winogrande"
TARGET_DELIMITER = " "


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default="/tmp/smollm2-hf")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    with open(FIXTURE_DIR / "winogrande.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    items, correct = [], 0
    for doc in docs:
        pairs = [encode_pair(tokenizer, ctx, TARGET_DELIMITER + doc["continuation"]) for ctx in doc["context_options"]]
        scored = [loglikelihood(model, c, k) for c, k in pairs]
        lls = [ll for ll, _ in scored]
        pred = argmax(lls)
        correct += pred == doc["gold"]
        items.append(
            {
                "context_ids": [c for c, _ in pairs],
                "continuation_ids": [k for _, k in pairs],
                "loglikelihoods": lls,
                "is_greedy": [g for _, g in scored],
                "pred_acc": pred,
            }
        )
    out = {"model": "SmolLM2-135M-Instruct (keel convert of the Q4_1 GGUF), float32", "acc": correct / len(docs),
           "items": items}
    (FIXTURE_DIR / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"acc {correct}/{len(docs)}")


if __name__ == "__main__":
    main()
