#!/usr/bin/env bash
# OpenBLAS's generic Prescott kernels (what 0.3.21 picks on a CPU it does not know) against the
# ones keel now restarts with (SkylakeX or Haswell by the CPU's features), interleaved: decoding
# one and 16 sequences, prompts, and a training step (BENCHMARKS.md, "OpenBLAS kernels").
#   bench/compare_blas_core.sh [ROUNDS]       (KEEL: the binary; default target/release/keel)
set -uo pipefail
cd "$(dirname "$0")/.."
keel=${KEEL:-./target/release/keel}
rounds="${1:-2}"
out=bench/results/blas_core.jsonl
: > "$out"
tag() { sed "s/^{/{\"run\":\"$1\",\"round\":$2,/" | tee -a "$out"; }
for i in $(seq "$rounds"); do
    for core in Prescott auto; do
        env=(); [ "$core" = Prescott ] && env=(OPENBLAS_CORETYPE=Prescott)
        env "${env[@]}" "$keel" bench generate --slots 1 --prompt-tokens 256 --max-new-tokens 128 --repeat 1 --json | tag "$core f32 1" "$i"
        env "${env[@]}" "$keel" bench generate --slots 16 --prompt-tokens 512 --max-new-tokens 32 --repeat 1 --json | tag "$core f32 16" "$i"
        env "${env[@]}" "$keel" bench generate --dtype f16 --slots 1 --prompt-tokens 256 --max-new-tokens 128 --repeat 1 --json | tag "$core f16 1" "$i"
        env "${env[@]}" "$keel" bench train --steps 3 --json | tag "$core train" "$i"
    done
done
