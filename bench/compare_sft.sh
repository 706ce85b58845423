#!/usr/bin/env bash
# Real SFT, keel against TRL (issue 15): `keel train --config bench/sft_gsm8k.toml` and
# bench/sft_trl.py on the same 128 GSM8K examples with the same settings, interleaved ROUNDS
# times; prints each run and the medians, the ratio and the peak memory of each.
#   bench/compare_sft.sh [ROUNDS] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
python="${2:-python3}"
cargo build --release --quiet
hf=/tmp/keel-bench-sft-hf
[ -f "$hf/config.json" ] || ./target/release/keel convert models/SmolLM2-135M-Instruct.Q4_1.gguf "$hf"
out="$(mktemp)"
for i in $(seq "$rounds"); do
    rm -rf /tmp/keel-bench-sft
    /usr/bin/time -f '%e %M' -o /tmp/keel-bench-sft.time ./target/release/keel train --config bench/sft_gsm8k.toml >/dev/null 2>&1
    read -r secs kib < /tmp/keel-bench-sft.time
    tokens=$(python3 -c "import json; print(sum(json.loads(l)['tokens'] for l in open('/tmp/keel-bench-sft/metrics.jsonl')))")
    echo "{\"impl\": \"keel\", \"seconds\": $secs, \"tokens\": $tokens, \"peak_rss_mib\": $((kib / 1024))}" | tee -a "$out"
    "$python" bench/sft_trl.py "$hf" 2>/dev/null | grep '^{"' | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {i: statistics.median(r["seconds"] for r in runs if r["impl"] == i) for i in ("keel", "trl")}
for i in med:
    peak = max(r["peak_rss_mib"] for r in runs if r["impl"] == i)
    print(f"{i:5} median {med[i]:.1f} s over {sum(r['impl'] == i for r in runs)} runs, peak RSS {peak:.0f} MiB")
print(f"keel is {med['trl'] / med['keel']:.2f}x faster than TRL")
PY
