#!/bin/bash
# Two or more keel binaries on IFEval (32 prompts, seed 0) at one slot count, interleaved, each as
# it ships (BENCHMARKS.md, "Decoding attention streams the cache"); prints one JSON line per run
# and keeps each binary's answers in /tmp/ab-NAME-answers.jsonl for cmp.
#   bench/compare_ifeval_ab.sh ROUNDS SLOTS NAME=KEEL...
cd "$(dirname "$0")/.." || exit 1
rounds=$1; slots=$2; shift 2
export KEEL_DATA=../shared/data
for i in $(seq $rounds); do for nb in "$@"; do
  n=${nb%%=*}; b=${nb#*=}; d=/tmp/ab-$n; rm -rf $d
  /usr/bin/time -f '%M' -o $d.rss $b eval --suite ifeval --limit 32 --seed 0 --batch-rows $slots --out $d >/dev/null 2>&1
  python3 -c "import json; t=json.load(open('$d/results.json'))['tasks']['ifeval']; print(json.dumps({'run':'$n','slots':$slots,'round':$i,'tokens':t['generated_tokens'],'seconds':round(t['seconds'],1),'tokens_per_s':round(t['generated_tokens_per_s'],1),'peak_rss_mib':int(open('$d.rss').read().split()[-1])//1024}))"
  cp $d/ifeval.samples.jsonl /tmp/ab-$n-answers.jsonl
done; done
