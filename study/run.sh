#!/bin/bash
# Runs (or resumes) every sweep of the study, in priority order (MedCalc CoT's last cell, then
# GSM8K CoT's seeds, ablation and baselines), then reports each. Any cell
# killed midway resumes from its checkpoint on the next run; done cells are never redone.
#   study/run.sh [KEEL]        (KEEL: the keel binary; default target/release/keel)
set -u
cd "$(dirname "$0")/.."
KEEL=${1:-target/release/keel}
status=0
for s in medcalc-cot gsm8k-cot gsm8k-label medcalc-label; do
    "$KEEL" sweep run "study/$s.toml" --out "study/$s" --jobs 1 --threads 2 || status=1
    "$KEEL" report "study/$s" || status=1
done
exit $status
