#!/usr/bin/env python3
"""PyTorch twin of `keel bench loglik`: multiple-choice scoring by log-likelihood.

Scores the first N items of ARC-Easy (every choice) the way lm-evaluation-harness's HFLM does
(`_loglikelihood_tokens`): requests sharing their input (context + continuation minus its last
token, lm-eval's logits cache) forwarded once, inputs sorted longest first, batches of
`--batch-rows` right-padded to the batch's longest, log-softmax over the full logits, then the
continuation positions gathered. transformers runs the directory `keel convert` writes (the same
f32 weights keel uses); tokens/s counts the tokens forwarded here (keel forwards fewer: it shares each context
between its continuations, so its tokens/s counts the twin's tokens, the same work).
    python3 bench/loglik_torch.py --model /tmp/smollm2-hf --threads 2 --json
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

DATA = Path(__file__).resolve().parents[1] / "../shared/data/arc/arc_easy.jsonl"


def encode_pair(tok, context, continuation):
    """lm-eval's `_encode_pair`: trailing context spaces move into the continuation."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def forward_inputs(requests):
    """Distinct forward inputs, and the requests each serves."""
    groups = {}
    for i, (ctx, cont) in enumerate(requests):
        groups.setdefault(tuple(ctx + cont[:-1]), []).append(i)
    return groups


@torch.inference_mode()
def score(model, requests, rows):
    groups = forward_inputs(requests)
    inputs = sorted(groups, key=lambda x: -len(x))
    out = [None] * len(requests)
    for at in range(0, len(inputs), rows):
        chunk = inputs[at:at + rows]
        width = max(map(len, chunk))
        batch = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, x in enumerate(chunk):
            batch[r, :len(x)] = torch.tensor(x)
        logprobs = F.log_softmax(model(batch).logits, dim=-1)
        for r, x in enumerate(chunk):
            for i in groups[x]:
                cont = requests[i][1]
                lp = logprobs[r, len(x) - len(cont):len(x)]
                target = torch.tensor(cont)
                greedy = bool((lp.argmax(-1) == target).all())
                out[i] = (float(lp.gather(1, target[:, None]).sum()), greedy)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face directory (keel convert output)")
    ap.add_argument("--limit", dest="items", type=int, default=200)
    ap.add_argument("--batch-rows", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    docs = [json.loads(line) for line, _ in zip(open(DATA, encoding="utf-8"), range(a.items))]
    requests, owner = [], []
    for d, doc in enumerate(docs):
        for choice in doc["choices"]:
            requests.append(encode_pair(tok, doc["query"] + "\nAnswer:", " " + choice))
            owner.append(d)
    tokens = sum(map(len, forward_inputs(requests)))
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        lls = score(model, requests, a.batch_rows)
        times.append(time.perf_counter() - t)
    best = {}
    for (ll, _), d in zip(lls, owner):
        best.setdefault(d, []).append(ll)
    acc = sum(max(range(len(v)), key=lambda i: (v[i], -i)) == docs[d]["gold"] for d, v in best.items()) / len(docs)
    med = statistics.median(times)
    if a.json:
        print(json.dumps({"impl": "pytorch", "task": "arc_easy", "items": len(docs), "requests": len(requests),
                          "threads": a.threads, "batch_rows": a.batch_rows, "tokens": tokens, "median_s": med,
                          "tokens_per_s": tokens / med, "acc": acc}))
    else:
        print(f"arc_easy {len(docs)} items ({len(requests)} requests, {tokens} input tokens), {a.threads} threads")
        print(f"  {med:.3f} s median of {a.repeat}: {tokens / med:.0f} tokens/s, acc {acc:.4f}")


if __name__ == "__main__":
    main()
