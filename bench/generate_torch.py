#!/usr/bin/env python3
"""PyTorch twin of `keel bench generate`: prompt processing and greedy decoding with a KV cache.

Runs transformers on a Hugging Face directory written by `keel convert` (the same f32 weights
keel uses), batch 1, with the same prompt text and token counts, EOS ignored:
    python3 bench/generate_torch.py --model /tmp/smollm2-hf --threads 2 --json
Works for every architecture `keel convert` writes (Llama, Gemma 3, ...): the model class comes
from the directory's config.json. Peak RSS is the process's VmHWM (model load included).
"""
import argparse
import inspect
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

BENCH_TEXT = ("The quick brown fox jumps over the lazy dog while the committee reviews the annual "
              "report on renewable energy. ")


def rss_mib(field):
    """A memory field (VmRSS, VmHWM) of this process from /proc, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face directory (keel convert output)")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--max-new-tokens", dest="new_tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    ids = tok(BENCH_TEXT * (a.prompt_tokens // 8 + 1), add_special_tokens=False).input_ids[: a.prompt_tokens]
    ids = torch.tensor([ids])
    # transformers 5.2x renamed the cache argument and output (`past_key_values` -> `cache`).
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    prefill, decode = [], []
    with torch.inference_mode():
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            # What `generate` does: the prompt's forward computes logits at its last position only.
            out = model(ids, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t1 = time.perf_counter()
            past = getattr(out, cache_kw)
            for _ in range(a.new_tokens):
                out = model(nxt, use_cache=True, **{cache_kw: past})
                past = getattr(out, cache_kw)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            decode.append(time.perf_counter() - t1)
            prefill.append(t1 - t0)
    p, d = statistics.median(prefill), statistics.median(decode)
    n = ids.shape[1]
    if a.json:
        print(json.dumps({"impl": "pytorch", "model_type": model.config.model_type,
                          "attn": model.config._attn_implementation, "threads": a.threads,
                          "prompt_tokens": n, "new_tokens": a.new_tokens,
                          "prefill_s": p, "decode_s": d, "prompt_tokens_per_s": n / p,
                          "decode_tokens_per_s": a.new_tokens / d, "peak_rss_mib": rss_mib("VmHWM")}))
    else:
        print(f"prompt {n} tokens in {p:.3f} s: {n / p:.0f} tokens/s")
        print(f"decode {a.new_tokens} tokens in {d:.3f} s: {a.new_tokens / d:.1f} tokens/s")
        print(f"peak RSS {rss_mib('VmHWM'):.0f} MiB")


if __name__ == "__main__":
    main()
