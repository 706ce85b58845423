#!/usr/bin/env bash
# IFEval generation throughput of the issue's reference binary (22141a1) as it ships, against this
# binary as it ships, interleaved, at 16 and 32 slots each, every answer compared (BENCHMARKS.md,
# "IFEval against 22141a1 as it ships"). Unlike bench/compare_ifeval.sh, the reference keeps
# OpenBLAS's own kernel choice, which on a CPU that Debian 12's OpenBLAS does not know is its
# generic SSE3 fallback; keel picks the CPU's kernels itself since session 7.
#   bench/compare_ifeval_shipped.sh OLD_KEEL [ROUNDS] [LIMIT]
# Writes bench/results/ifeval_shipped.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-1}"
limit="${3:-32}"
new=${KEEL:-./target/release/keel}
export KEEL_DATA=${KEEL_DATA:-../shared/data}
unset OPENBLAS_CORETYPE
out=bench/results/ifeval_shipped.jsonl
: > "$out"
for i in $(seq "$rounds"); do
    for run in "old 32" "new 32" "old 16" "new 16"; do
        set -- $run
        bin=$new
        [ "$1" = old ] && bin=$old
        dir=/tmp/keel-ifeval-shipped-$1-$2
        rm -rf "$dir"
        /usr/bin/time -f '%M' -o "$dir.rss" "$bin" eval --suite ifeval --limit "$limit" --seed 0 --batch-rows "$2" --out "$dir" >/dev/null 2>&1
        python3 -c "import json; t=json.load(open('$dir/results.json'))['tasks']['ifeval']; print(json.dumps({'run': '$1 $2', 'round': $i, 'tokens': t['generated_tokens'], 'seconds': round(t['seconds'], 1), 'tokens_per_s': round(t['generated_tokens_per_s'], 1), 'prompt_level_strict': t['prompt_level_strict'], 'peak_rss_mib': int(open('$dir.rss').read().split()[-1]) // 1024}))" | tee -a "$out"
    done
    for s in 16 32; do
        python3 - "/tmp/keel-ifeval-shipped-old-$s" "/tmp/keel-ifeval-shipped-new-$s" <<'PY'
import json, sys
a, b = ([json.loads(l)["output"] for l in open(f"{d}/ifeval.samples.jsonl")] for d in sys.argv[1:])
print(f"{sys.argv[2]}: {sum(x == y for x, y in zip(a, b))} of {len(a)} answers identical to the reference's")
PY
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
by = {}
for r in map(json.loads, open(sys.argv[1])):
    by.setdefault(r["run"], []).append(r["tokens_per_s"])
for name, v in by.items():
    print(f"{name:8} tokens/s median {statistics.median(v):7.1f}  ({', '.join(f'{x:.1f}' for x in v)})")
best = {k: max(statistics.median(v) for n, v in by.items() if n.startswith(k)) for k in ("old", "new")}
print(f"best new / best old: {best['new'] / best['old']:.2f}x")
PY
