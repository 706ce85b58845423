#!/usr/bin/env bash
# 30 steps of each objective (CE, TALR, DFT, FLOW, CE + L2 to the initial weights) on a GSM8K
# slice with SmolLM2-135M-Instruct: 30 examples, 2 epochs, micro-batch 2. Prints the mean
# cross-entropy of the first and last five steps and the median step time of each run.
#   bench/objective_runs.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/objective-check}"
cargo build --release --quiet
common=(--config configs/smollm2-gsm8k-talr.toml --set data.max_examples=30 --set train.micro_batch_size=2
        --set train.grad_accum=1 --set train.max_steps=30 --set train.lr=2e-5 --set train.schedule='"constant"'
        --set train.warmup_steps=0 --set output.save_every=0 --set output.keep_last=1)
for run in ce talr dft flow ce-l2; do
    objective="${run%-l2}"
    extra=(); [ "$run" = ce-l2 ] && extra=(--set train.l2_init=1e-3)
    rm -rf "$out/$run"
    ./target/release/keel train "${common[@]}" --set train.objective="\"$objective\"" "${extra[@]}" --set output.dir="\"$out/$run\"" 2>/dev/null >/dev/null
done
python3 - "$out" <<'PY'
import json, pathlib, statistics, sys
for run in ["ce", "talr", "dft", "flow", "ce-l2"]:
    m = [json.loads(l) for l in (pathlib.Path(sys.argv[1]) / run / "metrics.jsonl").read_text().splitlines()]
    first, last = statistics.mean(x["ce"] for x in m[:5]), statistics.mean(x["ce"] for x in m[-5:])
    print(f"{run:6} steps {len(m)}  CE first 5 steps {first:.4f}  last 5 steps {last:.4f}  "
          f"({'lower' if last < first else 'NOT lower'})  median step {statistics.median(x['step_s'] for x in m):.2f} s")
PY
