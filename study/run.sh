#!/bin/bash
# Runs (or resumes) every sweep of the study, in the order they ran (MedCalc CoT, GSM8K CoT,
# GSM8K label-only, MedCalc label-only), then reports each. Any cell killed midway resumes from
# its checkpoint on the next run; done cells are never redone. With an older KEEL, run today's
# `keel report study/<sweep>` afterwards: the committed reports are today's (STUDY.md).
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
