#!/usr/bin/env bash
# Interleaves `keel bench loglik` (ARC-Easy's first 200 items, every choice, on the default GGUF
# dequantized to f32) and its PyTorch twin (bench/loglik_torch.py: lm-evaluation-harness's
# recipe with transformers on the same weights converted by `keel convert`), ROUNDS times each,
# then prints the medians and the keel/transformers ratio on the same token count.
#   bench/compare_loglik.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
source bench/real_model.sh
out="$(mktemp)"
for i in $(seq "$rounds"); do
    ./target/release/keel bench loglik --model "$model" --threads 2 --repeat 1 --json | tee -a "$out"
    python3 bench/loglik_torch.py --model "$hf" --threads 2 --repeat 1 --json 2>/dev/null | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {impl: statistics.median(r["tokens_per_s"] for r in runs if r["impl"] == impl) for impl in ("keel", "pytorch")}
acc = {r["impl"]: r["acc"] for r in runs}
tokens = {r["impl"]: r["tokens"] for r in runs}
print(f"tokens (lm-eval inputs): keel {tokens['keel']}, transformers {tokens['pytorch']}; acc keel {acc['keel']:.4f}, transformers {acc['pytorch']:.4f}")
print(f"tokens_per_s: keel {med['keel']:.0f}, transformers {med['pytorch']:.0f}, ratio {med['keel'] / med['pytorch']:.2f}x")
PY
