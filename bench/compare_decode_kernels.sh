#!/usr/bin/env bash
# Session 9's decoding kernels against the binary before them, interleaved (BENCHMARKS.md,
# "Decoding kernels: blocked one-token attention and an AVX-512 tile"):
#  - `keel bench generate` at 16 and 32 slots (512-token prompts, 64 new tokens each);
#  - `keel bench gemm --decode-rows` (one step's weight products) with the AVX2 and the AVX-512
#    tile, chosen by KEEL_PACKED_KERNEL (new binary only).
#   bench/compare_decode_kernels.sh OLD_KEEL [ROUNDS]
# Writes bench/results/decode_kernels.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-2}"
new=${KEEL:-./target/release/keel}
out=bench/results/decode_kernels.jsonl
: > "$out"
tag() { sed "s/^{/{\"run\":\"$1\",\"round\":$2,/" | tee -a "$out"; }
for i in $(seq "$rounds"); do
    for slots in 16 32; do
        "$old" bench generate --slots "$slots" --prompt-tokens 512 --max-new-tokens 64 --repeat 1 --json | tag "old generate $slots" "$i"
        "$new" bench generate --slots "$slots" --prompt-tokens 512 --max-new-tokens 64 --repeat 1 --json | tag "new generate $slots" "$i"
    done
    for rows in 16 32; do
        for kernel in avx2 avx512; do
            KEEL_PACKED_KERNEL=$kernel "$new" bench gemm --decode-rows "$rows" --json | tag "products $kernel $rows" "$i"
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
by = {}
for r in map(json.loads, open(sys.argv[1])):
    key = "decode_tokens_per_s" if "decode_tokens_per_s" in r else "step_ms"
    by.setdefault(r["run"], (key, []))[1].append(r[key])
for name, (key, v) in by.items():
    print(f"{name:22} {key} median {statistics.median(v):7.1f}  ({', '.join(f'{x:.1f}' for x in v)})")
PY
