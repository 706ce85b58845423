#!/usr/bin/env python3
"""Reference multiple-choice scores for ARC-Easy, computed as lm-evaluation-harness does.

Loads a transformers checkpoint of SmolLM2-135M-Instruct (float32, eager
attention, two CPU threads), scores the first 40 items of
``../shared/data/arc/arc_easy.jsonl`` and writes
``crates/keel-eval/tests/fixtures/arc_easy_reference.json``.

The recipe follows lm-evaluation-harness (``lm_eval/tasks/arc/arc_easy.yaml``,
``lm_eval/api/task.py``, ``lm_eval/api/model.py``, ``lm_eval/models/huggingface.py``):

* context = ``"{query}\\nAnswer:"`` (the data's ``query`` already holds
  ``"Question: ..."``, as in lm-eval's ``doc_to_text``), zero-shot, no
  description, no chat template; continuation = ``" " + choice``
  (``target_delimiter`` defaults to ``" "``).
* ``_encode_pair``: trailing whitespace of the context moves to the start of the
  continuation; ``whole = encode(context + continuation)``,
  ``context_ids = encode(context)``, ``continuation_ids = whole[len(context_ids):]``.
  The split is by token count, so a token that merges across the boundary would
  land in the continuation while the context ids stay those of the context
  alone; ``split_mismatches`` in the script's printout counts such cases.
* ``encode`` is ``tokenizer.encode(s, add_special_tokens=False)``. lm-eval's
  ``HFLM.tok_encode`` lets the tokenizer decide (``add_bos_token=None``, i.e.
  the tokenizer's default ``add_special_tokens=True``); SmolLM2's tokenizer
  adds no BOS, so both give the same ids -- the script asserts that.
* One forward pass over ``(context_ids + continuation_ids)[:-1]``, batch of one,
  no padding; the log-likelihood is the float32 sum of the log-softmax at the
  continuation tokens, ``is_greedy`` whether every continuation token is the
  argmax.
* ``acc``: ``argmax(lls) == gold``; ``acc_norm``: ``argmax(lls / len(choice))``
  with the character length of the choice *without* the delimiter. Ties go to
  the first choice, like ``np.argmax``.

The checkpoint comes from keel's converter::

    cargo build --release
    ./target/release/keel convert models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf

Regenerate (160 forward passes: about 30 s on two idle cores; rerunning gives
identical bytes)::

    python tools/make_eval_fixtures.py [/tmp/smollm2-hf]
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = REPO_ROOT / "../shared/data/arc/arc_easy.jsonl"
OUT_FILE = REPO_ROOT / "crates/keel-eval/tests/fixtures/arc_easy_reference.json"

N_ITEMS = 40
CONTEXT_TEMPLATE = "{query}\nAnswer:"
TARGET_DELIMITER = " "


def encode(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    # lm-eval leaves special tokens to the tokenizer; make sure that is the same.
    assert tokenizer.encode(text) == ids, "tokenizer adds special tokens; lm-eval would keep them"
    return ids


def encode_pair(tokenizer, context, continuation):
    """lm-eval's ``TemplateLM._encode_pair`` for a causal model."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole_ids = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole_ids[len(context_ids):]


@torch.no_grad()
def loglikelihood(model, context_ids, continuation_ids):
    """Sum of continuation log-probabilities and whether each token is the argmax."""
    assert context_ids and continuation_ids
    inp = torch.tensor([(context_ids + continuation_ids)[:-1]], dtype=torch.long)
    logprobs = torch.log_softmax(model(inp).logits[0].float(), dim=-1)
    logprobs = logprobs[-len(continuation_ids):]  # rows predicting the continuation
    targets = torch.tensor(continuation_ids, dtype=torch.long)
    is_greedy = bool((logprobs.argmax(dim=-1) == targets).all())
    ll = float(logprobs.gather(1, targets[:, None]).sum())
    return ll, is_greedy


def argmax(values):
    """Index of the first maximum, as ``np.argmax``."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


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

    with open(DATA_FILE, encoding="utf-8") as f:
        docs = [json.loads(line) for line, _ in zip(f, range(N_ITEMS))]
    assert len(docs) == N_ITEMS

    items = []
    split_mismatches = 0
    for index, doc in enumerate(docs):
        context = CONTEXT_TEMPLATE.format(query=doc["query"])
        continuations = [TARGET_DELIMITER + choice for choice in doc["choices"]]
        context_ids, continuation_ids, lls, greedy = None, [], [], []
        for continuation in continuations:
            ctx_ids, cont_ids = encode_pair(tokenizer, context, continuation)
            assert context_ids in (None, ctx_ids)
            context_ids = ctx_ids
            if encode(tokenizer, continuation) != cont_ids:
                split_mismatches += 1
            ll, is_greedy = loglikelihood(model, ctx_ids, cont_ids)
            continuation_ids.append(cont_ids)
            lls.append(ll)
            greedy.append(is_greedy)
        normalized = [ll / len(choice) for ll, choice in zip(lls, doc["choices"])]
        items.append({
            "index": index,
            "gold": doc["gold"],
            "context": context,
            "continuations": continuations,
            "context_ids": context_ids,
            "continuation_ids": continuation_ids,
            "loglikelihoods": lls,
            "is_greedy": greedy,
            "pred_acc": argmax(lls),
            "pred_acc_norm": argmax(normalized),
        })

    acc = sum(it["pred_acc"] == it["gold"] for it in items) / len(items)
    acc_norm = sum(it["pred_acc_norm"] == it["gold"] for it in items) / len(items)
    reference = {
        "task": "arc_easy",
        "n": len(items),
        "context_template": CONTEXT_TEMPLATE,
        "target_delimiter": TARGET_DELIMITER,
        "items": items,
        "acc": acc,
        "acc_norm": acc_norm,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"wrote {OUT_FILE.relative_to(REPO_ROOT)}")
    print(f"acc = {acc:.4f}  acc_norm = {acc_norm:.4f}  over {len(items)} items")
    print(f"continuations whose ids differ from encoding them alone: {split_mismatches}")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
