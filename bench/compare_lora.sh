#!/usr/bin/env bash
# LoRA (rank 16, all seven projections) against the full step, in keel and in PyTorch + PEFT,
# interleaved: each round runs keel full, keel LoRA, PyTorch full, PyTorch LoRA. Prints every
# run's JSON line, then per implementation the median steps, the ratio of medians and the
# ratios of each round's pair (the noise on this machine is larger than the effect of most
# changes, so the pairs matter).
#   bench/compare_lora.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
args=(--shape smollm2-135m --batch-rows 4 --seq-len 256 --steps 3 --threads 2 --json)
cargo build --release --quiet
out="$(mktemp)"
for i in $(seq "$rounds"); do
    ./target/release/keel bench train "${args[@]}" | tee -a "$out"
    ./target/release/keel bench train "${args[@]}" --lora-rank 16 | tee -a "$out"
    python3 bench/train_step_torch.py "${args[@]}" 2>/dev/null | tee -a "$out"
    python3 bench/train_step_torch.py "${args[@]}" --lora-rank 16 2>/dev/null | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for impl in ("keel", "pytorch"):
    full = [r for r in runs if r["impl"] == impl and r["lora_rank"] == 0]
    lora = [r for r in runs if r["impl"] == impl and r["lora_rank"] > 0]
    f, l = statistics.median(r["median_s"] for r in full), statistics.median(r["median_s"] for r in lora)
    pairs = ", ".join(f"{b['median_s'] / a['median_s']:.3f}" for a, b in zip(full, lora))
    print(f"{impl:8} full {f:.3f} s (peak {max(r['peak_rss_mib'] for r in full):.0f} MiB), "
          f"LoRA {l:.3f} s (peak {max(r['peak_rss_mib'] for r in lora):.0f} MiB): LoRA/full {l / f:.3f} (rounds {pairs})")
PY
