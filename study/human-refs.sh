#!/bin/bash
# Finding 2's check on how to read the general code length (STUDY.md): ΔL on human-written general
# text, HumanEval's canonical solutions after their signatures and docstrings (164 Python
# functions, nothing like GSM8K), instead of the base's own answers to IFEval prompts, for chosen
# GSM8K CoT cells. The sweep kept no weights, so each cell is trained again from its committed
# config.toml (same seed and threads; a killed run resumes from its checkpoint), a
# WiSE-FT cell merges its source again, and the domain ΔL is measured again beside the new one so
# that it can be checked against the cell's analyze.json (equal up to the rounding of the matrix
# kernels of the host that ran the cell).
#   study/human-refs.sh [KEEL]    writes study/human-refs/<point>.json; a point already there is skipped
set -euo pipefail
cd "$(dirname "$0")/.."
KEEL=${1:-target/release/keel}
scratch=${KEEL_SCRATCH:-/tmp/keel-human-refs}
base=models/SmolLM2-135M-Instruct.Q4_1.gguf
cells=study/gsm8k-cot/cells
mkdir -p "$scratch/runs" study/human-refs
refs="$scratch/humaneval-solutions.jsonl"
zcat ../shared/data/humaneval/HumanEval.jsonl.gz | jq -c '{prompt: .prompt, completion: .canonical_solution}' >"$refs"

# Trains cell $1 again into $scratch/runs/$1 (resuming a killed run) unless its final/ is there.
train_again() {
    local run="$scratch/runs/$1" resume=()
    [ -d "$run/final" ] && return
    [ -d "$run" ] && resume=(--resume)
    "$KEEL" train --config "$cells/$1/config.toml" --set "output.dir=\"$run\"" "${resume[@]}"
}

# point name : cell id in study/gsm8k-cot, most telling first: seed 0 of SFT and TALR along the
# ladder, seeds 1 and 2 of the cells that decide finding 2 at 1e-4 and 1e-5, then the baselines.
for pair in talr-1e-4:f32a75d0311a5d88 sft-1e-5:efb77837e7b50ba5 talr-tau5-1e-4:f1b049e9d14dc64b \
    sft-1e-4:d42f378091beff15 sft-1e-3:5470ad12c16f2085 talr-1e-3:6618c59b6d64ba58 \
    sft-1e-5-seed1:6f126f98fae8ba74 sft-1e-5-seed2:5461f0ec0041fe03 \
    talr-tau5-1e-4-seed1:afab21c575bcce06 talr-tau5-1e-4-seed2:e41c323b256b861d \
    talr-1e-4-seed1:00669731b485fd1b talr-1e-4-seed2:4a662ec01948bb82 \
    sft-1e-4-seed1:0594135c65249664 sft-1e-4-seed2:bf3d9c50289bd433 \
    lora-1e-3:d6d4c331ac0c331e wise-ft-0.5-1e-3:31760ce362eb6daf l2-1e6-1e-3:3741db61cb1a86d6 \
    talr-floor0.1-1e-4:689688ef3fac9a2e; do
    name=${pair%%:*}
    cell=${pair#*:}
    out="study/human-refs/$name.json"
    [ -f "$out" ] && continue
    from=$(jq -r '.from // empty' "$cells/$cell/cell.json")
    if [ -n "$from" ]; then
        model="$scratch/runs/$cell"
        if [ ! -f "$model/model.safetensors" ]; then
            train_again "$from"
            "$KEEL" merge --base "$base" --tuned "$scratch/runs/$from/final" \
                --alpha "$(jq -r .alpha "$cells/$cell/cell.json")" --out "$model"
        fi
    else
        train_again "$cell"
        model="$scratch/runs/$cell/final"
    fi
    "$KEEL" analyze --model "$model" --base "$base" --data "$refs" --format prompt_completion --limit 0 \
        --hardest 10 --out "$scratch/general-$name"
    "$KEEL" analyze --model "$model" --base "$base" --data ../shared/data/gsm8k/test.jsonl --format gsm8k \
        --limit 64 --hardest 5 --out "$scratch/domain-$name"
    jq -n --arg point "$name" --arg cell "$cell" \
        --slurpfile general "$scratch/general-$name/analysis.json" \
        --slurpfile domain "$scratch/domain-$name/analysis.json" \
        --slurpfile sweep "$cells/$cell/analyze.json" \
        'def brief: {examples: .examples, tokens: .domain.model.tokens, mean_nll: .domain.model.mean_nll,
                     base_mean_nll: .domain.base_mean_nll, delta_l: .domain.delta_l};
         {point: $point, cell: $cell, human_general: ($general[0] | brief), domain_again: ($domain[0] | brief),
          in_the_sweep: $sweep[0]}' >"$out.tmp"
    mv "$out.tmp" "$out"
done
rm -rf "$scratch/runs"
