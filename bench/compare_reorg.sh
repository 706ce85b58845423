#!/usr/bin/env bash
# Interleaves the training step and generation of two keel binaries (before and after a change)
# ROUNDS times, and prints each run's JSON line, then the medians and the new/old ratios.
#   bench/compare_reorg.sh OLD_KEEL NEW_KEEL [ROUNDS]
# OLD_KEEL takes the flags of commit 22141a1 (--batch/--seq, --new-tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1"; new="$2"; rounds="${3:-3}"
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
out="$(mktemp)"
for i in $(seq "$rounds"); do
    "$old" bench train --shape smollm2-135m --batch 4 --seq 256 --steps 3 --threads 2 --json | sed 's/^{/{"bin":"old",/' | tee -a "$out"
    "$new" bench train --shape smollm2-135m --batch-rows 4 --seq-len 256 --steps 3 --threads 2 --json | sed 's/^{/{"bin":"new",/' | tee -a "$out"
    "$old" bench generate --model "$model" --threads 2 --repeat 1 --json | sed 's/^{/{"bin":"old",/' | tee -a "$out"
    "$new" bench generate --model "$model" --threads 2 --repeat 1 --json | sed 's/^{/{"bin":"new",/' | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(b, key, kind):
    return statistics.median(r[key] for r in runs if r["bin"] == b and kind in r)
for key, kind, better in [("median_s", "shape", "lower"), ("prompt_tokens_per_s", "prefill_s", "higher"), ("decode_tokens_per_s", "prefill_s", "higher")]:
    o, n = med("old", key, kind), med("new", key, kind)
    print(f"{key:22} old {o:9.3f}  new {n:9.3f}  new/old {n / o:.3f} ({better} is better)")
PY
