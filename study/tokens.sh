#!/bin/bash
# Finding 3's token report (STUDY.md): the base model's probability of every target token of
# each domain's CoT and label-only targets (`keel analyze`: histogram, mean NLL, hardest tokens).
#   study/tokens.sh [KEEL]        writes study/tokens/{gsm8k,medcalc}-{cot,label}.json
set -eu
cd "$(dirname "$0")/.."
KEEL=${1:-target/release/keel}
mkdir -p study/tokens
for target in cot label; do
    # GSM8K: the first 256 training examples (the size of one GSM8K cell's training).
    "$KEEL" analyze --data ../shared/data/gsm8k/train.jsonl --format gsm8k --target "$target" \
        --limit 256 --out "/tmp/keel-tokens-gsm8k-$target"
    cp "/tmp/keel-tokens-gsm8k-$target/analysis.json" "study/tokens/gsm8k-$target.json"
    # MedCalc: 40 rows of keel's held-out split (the training rows' distribution; a note is
    # ~700 tokens, so more rows cost minutes each).
    "$KEEL" analyze --data ../shared/data/medcalc_bench/test_data.csv --format medcalc --target "$target" \
        --limit 40 --out "/tmp/keel-tokens-medcalc-$target"
    cp "/tmp/keel-tokens-medcalc-$target/analysis.json" "study/tokens/medcalc-$target.json"
done
