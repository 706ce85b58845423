# Sourced by the comparison scripts that run the real model: builds keel, and sets `model` (the
# default GGUF) and `hf` (the same weights as an f32 Hugging Face directory for the PyTorch twin,
# written by `keel convert` once and reused).
cargo build --release --quiet
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
hf="${TMPDIR:-/tmp}/keel-bench-smollm2-hf"
[ -f "$hf/model.safetensors" ] || ./target/release/keel convert "$model" "$hf"
