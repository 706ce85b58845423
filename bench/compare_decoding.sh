#!/usr/bin/env bash
# Decoding speed by weight precision and slot count, and IFEval throughput against the reference
# binary, interleaved round by round (BENCHMARKS.md, "Decoding is memory-bound").
#   bench/compare_decoding.sh OLD_KEEL [ROUNDS] [IFEVAL_ROUNDS]
# OLD_KEEL: a release build of the reference commit (22141a1), e.g. from a git worktree.
# Writes bench/results/decoding.jsonl and bench/results/membw.log.
set -uo pipefail
cd "$(dirname "$0")/.."
old="$1"
rounds="${2:-2}"
ifeval_rounds="${3:-1}"
new=${KEEL:-./target/release/keel}   # KEEL: the binary under test
out=bench/results/decoding.jsonl
: > "$out"
gcc -O3 -march=native -ffast-math -fopenmp bench/membw.c -o /tmp/membw && /tmp/membw | tee bench/results/membw.log
tag() { sed "s/^{/{\"run\":\"$1\",\"round\":$2,/" | tee -a "$out"; }
for i in $(seq "$rounds"); do
    for dtype in f32 f16 bf16; do
        "$new" bench generate --dtype "$dtype" --slots 1 --prompt-tokens 256 --max-new-tokens 128 --repeat 1 --json | tag "new $dtype 1" "$i"
        "$new" bench generate --dtype "$dtype" --slots 16 --prompt-tokens 512 --max-new-tokens 32 --repeat 1 --json | tag "new $dtype 16" "$i"
    done
    # 22141a1 called the budget --new-tokens.
    "$old" bench generate --prompt-tokens 256 --new-tokens 128 --repeat 1 --json | tag "old f32 1" "$i"
done
# IFEval: the reference binary at 16 slots; this one in f32 at 16 and 32 slots, in f16 at 32.
for i in $(seq "$ifeval_rounds"); do
    for run in "old 16 f32" "new 16 f32" "new 32 f32" "new 32 f16"; do
        set -- $run
        bin=$new; dtype=(--dtype "$3")
        [ "$1" = old ] && bin=$old && dtype=()
        dir=/tmp/keel-ifeval-$1-$2-$3
        "$bin" eval --suite ifeval --limit 16 --seed 0 --batch-rows "$2" "${dtype[@]}" --out "$dir" >/dev/null 2>&1
        python3 -c "import json; t=json.load(open('$dir/results.json'))['tasks']['ifeval']; print(json.dumps({'tokens': t['generated_tokens'], 'seconds': t['seconds'], 'tokens_per_s': t['generated_tokens_per_s'], 'prompt_level_strict': t['prompt_level_strict']}))" | tag "ifeval $1 $2 $3" "$i"
    done
done
# Answers: each IFEval run's greedy answers against the reference binary's.
python3 - "$out" <<'PY'
import json, statistics, sys, glob
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["run"], []).append(r)
for name, rs in by.items():
    key = "tokens_per_s" if "tokens_per_s" in rs[0] else "decode_tokens_per_s"
    print(f"{name:22} {key} median {statistics.median(r[key] for r in rs):7.1f}  ({', '.join(f'{r[key]:.1f}' for r in rs)})")
def answers(d):
    return [json.loads(l)["output"] for l in open(f"{d}/ifeval.samples.jsonl")]
ref = answers("/tmp/keel-ifeval-old-16-f32")
for d in sorted(glob.glob("/tmp/keel-ifeval-new-*")):
    a = answers(d)
    print(f"{d}: {sum(x == y for x, y in zip(a, ref))} of {len(ref)} answers identical to the reference binary's")
PY
