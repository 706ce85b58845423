#!/usr/bin/env bash
# The tests, as CI runs them: formatting, lints, then every test of the workspace.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast
