#!/usr/bin/env bash
# Decoding against an older binary, interleaved, with the machine's read bandwidth measured in the
# same run (BENCHMARKS.md, "IFEval generation" and "Decoding kernels"):
#  - `keel bench generate` at each slot count (512-token prompts, 64 new tokens each);
#  - `keel bench gemm --decode-rows` (one step's weight products) with the AVX2 and the AVX-512
#    tile, chosen by KEEL_PACKED_KERNEL (new binary only);
#  - bench/membw.c on two threads, before and after, for the floor.
#   bench/compare_decode_kernels.sh OLD_KEEL [ROUNDS] [SLOTS...]
# Writes bench/results/${OUT:-decode_kernels}.jsonl and .membw.log.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-2}"
shift $(( $# >= 2 ? 2 : 1 ))
slots_list=("$@")
[ ${#slots_list[@]} -gt 0 ] || slots_list=(16 32)
new=${KEEL:-./target/release/keel}
out=bench/results/${OUT:-decode_kernels}.jsonl
: > "$out"
gcc -O3 -march=native -ffast-math -fopenmp bench/membw.c -o /tmp/keel-membw
/tmp/keel-membw 1024 > "${out%.jsonl}.membw.log"
tag() { sed "s/^{/{\"run\":\"$1\",\"round\":$2,/" | tee -a "$out"; }
for i in $(seq "$rounds"); do
    for slots in "${slots_list[@]}"; do
        "$old" bench generate --slots "$slots" --prompt-tokens 512 --max-new-tokens 64 --repeat 1 --json | tag "old generate $slots" "$i"
        "$new" bench generate --slots "$slots" --prompt-tokens 512 --max-new-tokens 64 --repeat 1 --json | tag "new generate $slots" "$i"
    done
    for rows in "${slots_list[@]}"; do
        for kernel in avx2 avx512; do
            KEEL_PACKED_KERNEL=$kernel "$new" bench gemm --decode-rows "$rows" --json | tag "products $kernel $rows" "$i"
        done
    done
done
/tmp/keel-membw 1024 >> "${out%.jsonl}.membw.log"
python3 - "$out" <<'PY'
import json, statistics, sys
by = {}
for r in map(json.loads, open(sys.argv[1])):
    key = "decode_tokens_per_s" if "decode_tokens_per_s" in r else "step_ms"
    by.setdefault(r["run"], (key, []))[1].append(r[key])
for name, (key, v) in by.items():
    print(f"{name:22} {key} median {statistics.median(v):7.1f}  ({', '.join(f'{x:.1f}' for x in v)})")
PY
