#!/usr/bin/env python3
"""Next-token logits of a `keel convert`ed Gemma-3-270M directory, loaded by transformers, against
crates/keel-model/tests/fixtures/gemma3/paris.safetensors (transformers on the GGUF itself):
    keel convert models/gemma-3-270m.Q4_K_M.gguf /tmp/gemma3-hf
    python3 tools/check_converted_gemma3.py /tmp/gemma3-hf      # exits 1 above 1e-4 relative
"""
import pathlib, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
ref = load_file(pathlib.Path(__file__).resolve().parent.parent / "crates/keel-model/tests/fixtures/gemma3/paris.safetensors")
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    logits = model(ref["input_ids"]).logits[0, -1]
diff, scale = (logits - ref["logits"][0]).abs().max().item(), ref["logits"].abs().max().item()
rel = diff / scale
print(f"max |diff| {diff:.3e} / max |ref| {scale:.2f} = {rel:.3e} over {logits.numel()} logits; "
      f"argmax {logits.argmax().item()} (reference {ref['logits'][0].argmax().item()})")
sys.exit(0 if rel <= 1e-4 else 1)
