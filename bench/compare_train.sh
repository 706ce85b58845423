#!/usr/bin/env bash
# Interleaves `keel bench train` and its PyTorch twin (bench/train_step_torch.py) on the same
# shape, batch, sequence length and thread count, ROUNDS times each, and prints every run's JSON
# line followed by the medians and the keel/PyTorch speed ratio. Timings on a shared 2-core
# machine vary ±25% run to run, hence the interleaving.
#   bench/compare_train.sh [ROUNDS] [extra args for both, e.g. --grad-checkpointing]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; shift || true
args=(--shape smollm2-135m --batch-rows 4 --seq-len 256 --steps 3 --threads 2 --json "$@")
cargo build --release --quiet
out="$(mktemp)"
for i in $(seq "$rounds"); do
    ./target/release/keel bench train "${args[@]}" | tee -a "$out"
    python3 bench/train_step_torch.py "${args[@]}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {}
for impl in ("keel", "pytorch"):
    rs = [r for r in runs if r["impl"] == impl]
    med[impl] = statistics.median(r["median_s"] for r in rs)
    peak = max(r["peak_rss_mib"] for r in rs)
    print(f"{impl:8} median step {med[impl]:.3f} s over {len(rs)} runs, {rs[0]['batch'] * rs[0]['seq'] / med[impl]:.0f} tokens/s, "
          f"{6 * rs[0]['params'] * rs[0]['batch'] * rs[0]['seq'] / med[impl] / 1e9:.1f} GFLOP/s, peak RSS {peak:.0f} MiB")
print(f"speed ratio keel/pytorch: {med['pytorch'] / med['keel']:.2f}x")
PY
