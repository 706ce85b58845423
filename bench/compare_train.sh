#!/usr/bin/env bash
# Interleaves `keel bench train` and its PyTorch twin (bench/train_step_torch.py) on the same
# shape, batch, sequence length and thread count, ROUNDS times each, and prints every run's JSON
# line followed by the medians and the keel/PyTorch speed ratio. Timings on a shared 2-core
# machine vary ±25% run to run, hence the interleaving.
#   bench/compare_train.sh [ROUNDS] [extra args for both, e.g. --grad-checkpointing]
# Environment:
#   SHAPE    the model shape (smollm2-135m, the default, or gemma3-270m)
#   LOSS_ON  which positions carry a loss, one or several in the order each round runs them:
#            "all" (the default), "last-half" (SFT-like: the LM head at those positions only;
#            --loss-on of both), or "all last-half"
#   KEEL     the keel binary (default: ./target/release/keel, built first)
#   PYTHON   the Python with torch and transformers (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; shift || true
shape="${SHAPE:-smollm2-135m}"
python="${PYTHON:-python3}"
if [ -z "${KEEL:-}" ]; then cargo build --release --quiet; fi
keel="${KEEL:-./target/release/keel}"
args=(--shape "$shape" --batch-rows 4 --seq-len 256 --steps 3 --threads 2 --json "$@")
out="$(mktemp)"
for i in $(seq "$rounds"); do
    for on in ${LOSS_ON:-all}; do
        # Tag both lines with the round.
        "$keel" bench train "${args[@]}" --loss-on "$on" | sed "s/^{/{\"round\":$i,/" | tee -a "$out"
        "$python" bench/train_step_torch.py "${args[@]}" --loss-on "$on" 2>/dev/null \
            | grep '^{' | sed "s/^{/{\"round\":$i,/" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for on in dict.fromkeys(r.get("loss_on", "all") for r in runs):
    med = {}
    for impl in ("keel", "pytorch"):
        rs = [r for r in runs if r["impl"] == impl and r.get("loss_on", "all") == on]
        med[impl] = statistics.median(r["median_s"] for r in rs)
        peak = max(r["peak_rss_mib"] for r in rs)
        each = ", ".join(f"{r['median_s']:.2f}" for r in rs)
        print(f"[{on}] {impl:8} median step {med[impl]:.3f} s over {len(rs)} runs "
              f"({each}), {rs[0]['batch'] * rs[0]['seq'] / med[impl]:.0f} tokens/s, "
              f"{6 * rs[0]['params'] * rs[0]['batch'] * rs[0]['seq'] / med[impl] / 1e9:.1f} GFLOP/s, peak RSS {peak:.0f} MiB")
    pairs = {}
    for r in runs:
        if r.get("loss_on", "all") == on:
            pairs.setdefault(r.get("round"), {})[r["impl"]] = r["median_s"]
    per_round = [p["pytorch"] / p["keel"] for p in pairs.values() if len(p) == 2]
    each = ", ".join(f"{x:.2f}" for x in per_round)
    print(f"[{on}] speed ratio keel/pytorch: {med['pytorch'] / med['keel']:.2f}x (per round: {each})")
PY
