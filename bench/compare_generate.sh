#!/usr/bin/env bash
# Interleaves `keel bench generate` (on a GGUF, dequantized to f32) and its PyTorch twin
# (bench/generate_torch.py, transformers on the same weights converted by `keel convert`),
# ROUNDS times each, then prints the medians, keel/transformers ratios and peak memory.
#   bench/compare_generate.sh [ROUNDS] [GGUF HF_DIR]
# Without GGUF and HF_DIR: the default SmolLM2 GGUF, converted once (bench/real_model.sh).
# Environment:
#   DTYPES  keel's --dtype values, each run every round after f32's keel run and the twin's
#           (default "f32"; e.g. "f32 f16"); ratios are all against transformers in f32
#   KEEL    the keel binary (default: ./target/release/keel, built first)
#   PYTHON  the Python with torch and transformers (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
python="${PYTHON:-python3}"
if [ $# -ge 3 ]; then
    model="$2"; hf="$3"
    if [ -z "${KEEL:-}" ]; then cargo build --release --quiet; fi
else
    source bench/real_model.sh
fi
keel="${KEEL:-./target/release/keel}"
out="$(mktemp)"
for i in $(seq "$rounds"); do
    for dtype in ${DTYPES:-f32}; do
        "$keel" bench generate --model "$model" --threads 2 --dtype "$dtype" --json \
            | sed "s/^{/{\"dtype\":\"$dtype\",\"round\":$i,/" | tee -a "$out"
        if [ "$dtype" = f32 ]; then
            "$python" bench/generate_torch.py --model "$hf" --threads 2 --json 2>/dev/null \
                | grep '^{' | sed "s/^{/{\"dtype\":\"f32\",\"round\":$i,/" | tee -a "$out"
        fi
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = ("prompt_tokens_per_s", "decode_tokens_per_s")
def med(impl, dtype, k):
    return statistics.median(r[k] for r in runs if r["impl"] == impl and r.get("dtype", "f32") == dtype)
base = {k: med("pytorch", "f32", k) for k in keys}
peak = max(r.get("peak_rss_mib", float("nan")) for r in runs if r["impl"] == "pytorch")
print(f"transformers f32: prompt {base[keys[0]]:.1f} tokens/s, decode {base[keys[1]]:.1f} tokens/s, peak RSS {peak:.0f} MiB")
for dtype in dict.fromkeys(r.get("dtype", "f32") for r in runs if r["impl"] == "keel"):
    rs = [r for r in runs if r["impl"] == "keel" and r.get("dtype", "f32") == dtype]
    m = {k: med("keel", dtype, k) for k in keys}
    print(f"keel {dtype}: prompt {m[keys[0]]:.1f} tokens/s ({m[keys[0]] / base[keys[0]]:.2f}x), "
          f"decode {m[keys[1]]:.1f} tokens/s ({m[keys[1]] / base[keys[1]]:.2f}x), "
          f"peak RSS {max(r['peak_rss_mib'] for r in rs):.0f} MiB")
PY
