#!/usr/bin/env bash
# IFEval generation throughput against the issue's reference binary (22141a1), interleaved, at
# 16 and 32 slots for each, with every answer compared (BENCHMARKS.md, "IFEval at 32 prompts").
#   bench/compare_ifeval.sh OLD_KEEL [ROUNDS] [LIMIT]
# OLD_KEEL: a release build of 22141a1 (a git worktree). It runs with OPENBLAS_CORETYPE set to
# the kernels keel now picks, so it is not slowed by OpenBLAS's generic fallback on this host.
# Writes bench/results/ifeval_speed.jsonl. SHIPPED=1 runs both binaries as they ship instead
# (the reference keeps OpenBLAS's own choice, which on a CPU Debian 12's OpenBLAS does not know
# is its SSE3 fallback) and writes bench/results/ifeval_shipped.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-1}"
limit="${3:-32}"
new=${KEEL:-./target/release/keel}
export KEEL_DATA=${KEEL_DATA:-../shared/data}   # where this binary looks for the benchmarks (22141a1 read ../shared/data)
out=bench/results/ifeval_speed.jsonl
core=$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)
if [ "${SHIPPED:-0}" = 1 ]; then
    out=bench/results/ifeval_shipped.jsonl
    core=
    unset OPENBLAS_CORETYPE
fi
: > "$out"
for i in $(seq "$rounds"); do
    for run in "old 16" "new 16" "old 32" "new 32"; do
        set -- $run
        bin=$new
        [ "$1" = old ] && bin=$old
        dir=/tmp/keel-ifeval-speed-$1-$2
        rm -rf "$dir"
        /usr/bin/time -f '%M' -o "$dir.rss" env ${core:+OPENBLAS_CORETYPE="$core"} \
            "$bin" eval --suite ifeval --limit "$limit" --seed 0 --batch-rows "$2" --out "$dir" >/dev/null 2>&1
        python3 -c "import json; t=json.load(open('$dir/results.json'))['tasks']['ifeval']; print(json.dumps({'run': '$1 $2', 'round': $i, 'tokens': t['generated_tokens'], 'seconds': t['seconds'], 'tokens_per_s': t['generated_tokens_per_s'], 'prompt_level_strict': t['prompt_level_strict'], 'peak_rss_mib': int(open('$dir.rss').read().split()[-1]) / 1024}))" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys, glob
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["run"], []).append(r["tokens_per_s"])
for name, v in by.items():
    print(f"{name:8} tokens/s median {statistics.median(v):7.1f}  ({', '.join(f'{x:.1f}' for x in v)})")
best_old = max(statistics.median(v) for k, v in by.items() if k.startswith("old"))
best_new = max(statistics.median(v) for k, v in by.items() if k.startswith("new"))
print(f"best new / best old: {best_new / best_old:.2f}x")
def answers(d):
    return [json.loads(l)["output"] for l in open(f"{d}/ifeval.samples.jsonl")]
ref = answers("/tmp/keel-ifeval-speed-old-16")
for d in sorted(glob.glob("/tmp/keel-ifeval-speed-*-[0-9]*")):
    if d.endswith(".rss"):
        continue
    a = answers(d)
    print(f"{d}: {sum(x == y for x, y in zip(a, ref))} of {len(ref)} answers identical to the reference binary's at 16 slots")
PY
