#!/usr/bin/env bash
# Interleaves `keel bench generate` (on the default GGUF, dequantized to f32) and its PyTorch
# twin (bench/generate_torch.py, transformers on the same weights converted by `keel convert`),
# ROUNDS times each, then prints the medians and keel/transformers ratios.
#   bench/compare_generate.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
source bench/real_model.sh
out="$(mktemp)"
for i in $(seq "$rounds"); do
    ./target/release/keel bench generate --model "$model" --threads 2 --json | tee -a "$out"
    python3 bench/generate_torch.py --model "$hf" --threads 2 --json 2>/dev/null | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {(impl, k): statistics.median(r[k] for r in runs if r["impl"] == impl)
       for impl in ("keel", "pytorch") for k in ("prompt_tokens_per_s", "decode_tokens_per_s")}
for k in ("prompt_tokens_per_s", "decode_tokens_per_s"):
    print(f"{k}: keel {med['keel', k]:.1f}, transformers {med['pytorch', k]:.1f}, ratio {med['keel', k] / med['pytorch', k]:.2f}x")
PY
