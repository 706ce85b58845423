#!/usr/bin/env bash
# Installs what keel needs beyond a Rust toolchain, then fetches the default model and the data
# sets. Re-running it does nothing that is already done.
#   scripts/setup.sh            system libraries + models + data sets (builds keel --release)
#   scripts/setup.sh --no-data  system libraries + models (what the tests need: they read
#                               the data sets from ../shared/data)
#   scripts/setup.sh --no-model system libraries only
set -euo pipefail
cd "$(dirname "$0")/.."

# OpenBLAS: keel's matrix products (see BENCHMARKS.md for why).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so '; then
    if command -v apt-get >/dev/null; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup: installing OpenBLAS (libopenblas-dev)" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libopenblas-dev >/dev/null
    else
        echo "setup: OpenBLAS is missing; install it with your package manager (libopenblas-dev, openblas-devel, brew install openblas)" >&2
        exit 1
    fi
fi

# bubblewrap: the sandbox HumanEval runs generated code in (keel refuses HumanEval without it).
if ! command -v bwrap >/dev/null; then
    if command -v apt-get >/dev/null; then
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup: installing bubblewrap" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "setup: bubblewrap is missing; install it with your package manager (bubblewrap)" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing; install Rust from https://rustup.rs" >&2
    exit 1
fi

if [ "${1:-}" != "--no-model" ]; then
    scripts/fetch-model.sh
    # The second model family (Gemma 3): its tests and `--model models/gemma-3-270m.Q4_K_M.gguf`.
    scripts/fetch-model.sh gemma3-270m
fi

# The data sets, into ${KEEL_DATA:-data}/, each file checked against its pinned sha256; from the
# offline copy in ../shared/data when there is one, else from their public sources.
if [ "${1:-}" = "" ]; then
    if [ -d ../shared/data ]; then
        cargo run --release --quiet -- data fetch --mirror ../shared/data
    else
        cargo run --release --quiet -- data fetch
    fi
fi
