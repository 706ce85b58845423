"""The fastest an IFEval run can go on this machine: a lower bound on its wall time from memory
bandwidth and peak GEMM rate, for the answers a run actually produced.

Replays keel's continuous batching (prompts in order, S slots, a slot refilled when its answer
ends) over the real prompt and answer lengths. Each decoding step must read every weight once
and every live slot's KV cache (bandwidth floor), and multiply every live row by every weight
(compute floor); the step costs the larger of the two. Prompts cost their FLOPs at the peak rate.
Nothing else (attention arithmetic, sampling, thread hand-offs) is counted, so the bound is
optimistic.

    python bench/ifeval_floor.py SAMPLES.jsonl TOKENIZER.json [--bandwidth GB/s] [--gflops N]
"""
import argparse
import json

from tokenizers import Tokenizer

# SmolLM2-135M: weights (f32 bytes, LM head included) and KV bytes per cached token.
PARAMS = 134_515_008
WEIGHT_BYTES = 4 * PARAMS
KV_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 4  # layers × kv heads × head dim × (K, V) × f32
# The chat template's tokens around a user turn (SmolLM2's default system prompt and markers).
TEMPLATE_TOKENS = 31

ap = argparse.ArgumentParser()
ap.add_argument("samples")
ap.add_argument("tokenizer")
ap.add_argument("--bandwidth", type=float, default=21.5, help="GB/s (bench/membw.c, 2 threads, 1 GiB: bench/results/membw_sizes.log)")
ap.add_argument("--gflops", type=float, default=203.0, help="peak GEMM GFLOP/s (keel bench gemm)")
ap.add_argument("--max-new-tokens", type=int, default=1280)
a = ap.parse_args()

tok = Tokenizer.from_file(a.tokenizer)
rows = [json.loads(line) for line in open(a.samples)]
prompts = [len(tok.encode(r["prompt"], add_special_tokens=False).ids) + TEMPLATE_TOKENS for r in rows]
answers = [len(tok.encode(r["output"], add_special_tokens=False).ids) for r in rows]
# An answer that ended before the budget also decoded its end-of-turn token.
steps_of = [n if n >= a.max_new_tokens else n + 1 for n in answers]


def floor(slots):
    bw, peak = a.bandwidth * 1e9, a.gflops * 1e9
    live = []  # [cached tokens, steps left]
    queue = list(zip(prompts, steps_of))
    seconds = 0.0
    while queue or live:
        while queue and len(live) < slots:
            p, s = queue.pop(0)
            seconds += 2 * PARAMS * p / peak
            live.append([p, s])
        bytes_ = WEIGHT_BYTES + sum(c for c, _ in live) * KV_BYTES_PER_TOKEN
        seconds += max(bytes_ / bw, 2 * PARAMS * len(live) / peak)
        for slot in live:
            slot[0] += 1
            slot[1] -= 1
        live = [s for s in live if s[1] > 0]
    return seconds


total = sum(answers)
print(json.dumps({"prompts": len(rows), "generated_tokens": total, "longest_answer": max(answers),
                  "bandwidth_gb_s": a.bandwidth, "peak_gflops": a.gflops,
                  "floor": {str(s): {"seconds": round(floor(s), 1), "tokens_per_s": round(total / floor(s), 1)}
                            for s in (16, 32, 64)}}))
