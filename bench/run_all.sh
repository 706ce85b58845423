#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, one after another (about 30 minutes on 2 cores), each output
# saved under bench/results/. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
cargo build --release --quiet
k=./target/release/keel
bench/compare_train.sh 3 > "$out/train_step.log"
$k bench gemm --threads 2 > "$out/gemm_keel.log"
python3 bench/gemm_torch.py --threads 2 > "$out/gemm_torch.log" 2>/dev/null
{
    $k bench train --steps 3 --grad-checkpointing --json
    python3 bench/train_step_torch.py --steps 3 --grad-checkpointing --json 2>/dev/null
} > "$out/grad_checkpointing.log"
# TALR against CE, and LoRA (rank 16, all projections) against the full step, interleaved.
for i in 1 2 3; do
    $k bench train --steps 3 --objective ce --json
    $k bench train --steps 3 --objective talr --json
    $k bench train --steps 3 --lora-rank 16 --json
done > "$out/objectives.log"
bench/compare_lora.sh 3 > "$out/lora.log"
bench/compare_generate.sh 3 > "$out/generate.log"
bench/compare_loglik.sh 3 > "$out/loglik.log"
# Decoding at 16–64 slots and the machine's read bandwidth, the two sides of the decoding floor
# (BENCHMARKS.md, "IFEval generation"). The comparisons against older binaries
# (bench/compare_ifeval.sh, bench/compare_decode_kernels.sh) need those builds and run by hand.
for s in 16 32 64; do
    $k bench generate --slots "$s" --prompt-tokens 512 --max-new-tokens 64 --repeat 1 --json | sed "s/^{/{\"run\":\"generate $s\",/"
done > "$out/decode_slots.jsonl"
gcc -O3 -march=native -ffast-math -fopenmp bench/membw.c -o /tmp/keel-membw && /tmp/keel-membw 1024 > "$out/membw_session10.log"
python3 - "$out/objectives.log" <<'PY' > "$out/objectives_summary.log"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(pred): return statistics.median(r["median_s"] for r in runs if pred(r))
ce = med(lambda r: r["objective"] == "ce" and r["lora_rank"] == 0)
talr = med(lambda r: r["objective"] == "talr")
lora = med(lambda r: r["lora_rank"] > 0)
peak = {name: max(r["peak_rss_mib"] for r in runs if pred(r)) for name, pred in
        [("ce", lambda r: r["objective"] == "ce" and r["lora_rank"] == 0), ("talr", lambda r: r["objective"] == "talr"), ("lora", lambda r: r["lora_rank"] > 0)]}
print(f"CE step {ce:.3f} s, TALR step {talr:.3f} s: TALR/CE = {talr / ce:.3f}")
print(f"LoRA r16 step {lora:.3f} s: LoRA/full = {lora / ce:.3f}")
print("peak RSS MiB:", peak)
PY
echo "results in $out/"
