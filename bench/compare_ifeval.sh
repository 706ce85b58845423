#!/usr/bin/env bash
# IFEval generation throughput of two binaries, interleaved, at each slot count of SLOTS (default
# "16 32"), with every answer compared (BENCHMARKS.md, "IFEval at 32 prompts").
#   [SLOTS="16 32"] [OUT=name] bench/compare_ifeval.sh OLD_KEEL [ROUNDS] [LIMIT]
# OLD_KEEL: the issue's reference, a release build of 22141a1 (a git worktree), or any older
# build. It runs with OPENBLAS_CORETYPE set to the kernels keel now picks, so it is not slowed
# by OpenBLAS's generic fallback on this host (keel since session 7 picks them itself).
# Writes bench/results/${OUT:-ifeval_speed}.jsonl. SHIPPED=1 runs both binaries as they ship instead
# (the reference keeps OpenBLAS's own choice, which on a CPU Debian 12's OpenBLAS does not know
# is its SSE3 fallback) and writes bench/results/${OUT:-ifeval_shipped}.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-1}"
limit="${3:-32}"
new=${KEEL:-./target/release/keel}
export KEEL_DATA=${KEEL_DATA:-../shared/data}   # where this binary looks for the benchmarks (22141a1 read ../shared/data)
slots=${SLOTS:-16 32}
out=bench/results/${OUT:-ifeval_speed}.jsonl
core=$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)
if [ "${SHIPPED:-0}" = 1 ]; then
    out=bench/results/${OUT:-ifeval_shipped}.jsonl
    core=
    unset OPENBLAS_CORETYPE
fi
: > "$out"
for i in $(seq "$rounds"); do
    for run in $(for s in $slots; do echo "old:$s new:$s"; done); do
        set -- ${run/:/ }
        bin=$new
        [ "$1" = old ] && bin=$old
        dir=/tmp/keel-ifeval-speed-$1-$2
        rm -rf "$dir"
        /usr/bin/time -f '%M' -o "$dir.rss" env ${core:+OPENBLAS_CORETYPE="$core"} \
            "$bin" eval --suite ifeval --limit "$limit" --seed 0 --batch-rows "$2" --out "$dir" >/dev/null 2>&1
        python3 -c "import json; t=json.load(open('$dir/results.json'))['tasks']['ifeval']; print(json.dumps({'run': '$1 $2', 'round': $i, 'tokens': t['generated_tokens'], 'seconds': t['seconds'], 'tokens_per_s': t['generated_tokens_per_s'], 'prompt_level_strict': t['prompt_level_strict'], 'peak_rss_mib': int(open('$dir.rss').read().split()[-1]) / 1024}))" | tee -a "$out"
    done
done
python3 - "$out" $slots <<'PY'
import json, statistics, sys
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
ref = answers(f"/tmp/keel-ifeval-speed-old-{sys.argv[2]}")
for d in [f"/tmp/keel-ifeval-speed-{b}-{s}" for s in sys.argv[2:] for b in ("old", "new")]:
    a = answers(d)
    print(f"{d}: {sum(x == y for x, y in zip(a, ref))} of {len(ref)} answers identical to the old binary's at {sys.argv[2]} slots")
PY
