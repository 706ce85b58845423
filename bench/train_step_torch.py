#!/usr/bin/env python3
"""PyTorch twin of `keel bench train`.

Times full training steps of a randomly initialised Llama model on the CPU so
the numbers can be set beside keel's in the same run. "Same work" means:

* the same model: HF `LlamaForCausalLM` built from the same shape (SmolLM2-135M
  or the `tiny` test shape), or `Gemma3ForCausalLM` (`gemma3-270m`, eager
  attention by default), float32, tied embeddings, random init (transformers'
  own init: normal(0, 0.02) for Linear/Embedding, ones for Llama's RMSNorm,
  zeros for Gemma's `1 + w` RMSNorm: a gain of one either way);
* the same data: B x T random token ids, full attention mask (no padding),
  labels = input ids (HF's shifted mean cross-entropy over all positions);
  with `--loss-on last-half` (keel: `keel bench train --loss-on last-half`) only the
  second half of each row is predicted, the T/2 positions T/2-1 .. T-2, and the
  LM head runs at those positions only: transformers' `logits_to_keep` with
  their indices, then the mean cross-entropy of those logits against the next
  tokens (what HF's loss computes, without a label tensor the size of the
  sequence);
* the same step: zero_grad + forward + backward + clip_grad_norm_(1.0) +
  AdamW(lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on matrices,
  0 on 1-D params);
* the same measurement: W untimed warm-up steps, then N timed steps; median
  and min seconds/step, tokens/s = B*T/median, GFLOP/s = 6*params*B*T/median
  (params = the model's distinct parameters, tied embedding counted once), peak
  RSS from /proc/self/status VmHWM.

Example:
    python bench/train_step_torch.py --shape smollm2-135m --batch-rows 4 --seq-len 256 \
        --steps 3 --threads 2 --json
"""
import argparse
import json
import statistics
import sys
import time

import torch

SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                         rope_theta=100000.0, max_position_embeddings=8192),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128, vocab_size=1000,
                 rope_theta=10000.0, max_position_embeddings=2048),
    # google/gemma-3-270m: sliding window 512 with every sixth layer global, 1 + w norms.
    "gemma3-270m": dict(hidden_size=640, num_hidden_layers=18, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=256, intermediate_size=2048,
                        vocab_size=262144, max_position_embeddings=32768, sliding_window=512,
                        layer_types=["full_attention" if l % 6 == 5 else "sliding_attention"
                                     for l in range(18)],
                        query_pre_attn_scalar=256, hidden_activation="gelu_pytorch_tanh",
                        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
                        final_logit_softcapping=None, attn_logit_softcapping=None),
}


def rss_mib(field):
    """Read a memory field (VmRSS, VmHWM) of this process from /proc, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    p.add_argument("--batch-rows", dest="batch", type=int, default=4)
    p.add_argument("--seq-len", dest="seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--attn", choices=["sdpa", "eager"], default=None,
                   help="attention kernel (default: sdpa for Llama shapes, eager for gemma3-270m)")
    p.add_argument("--loss-on", choices=["all", "last-half"], default="all",
                   help="positions with a loss: all, or each row's second half with the LM head "
                        "computed there only (keel: --loss-on last-half)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--lora-rank", type=int, default=0,
                   help="train a PEFT LoRA adapter of this rank on all seven projections "
                        "(alpha 2*rank, no dropout), as `keel bench train --lora-rank`")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    gemma = a.shape.startswith("gemma3")
    if a.attn is None:
        a.attn = "eager" if gemma else "sdpa"
    baseline = rss_mib("VmRSS")
    if gemma:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig
        cfg = Gemma3TextConfig(**SHAPES[a.shape], rms_norm_eps=1e-6, tie_word_embeddings=True,
                               use_cache=False, attn_implementation=a.attn)
        model = Gemma3ForCausalLM(cfg).float().train()
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(**SHAPES[a.shape], rms_norm_eps=1e-5, tie_word_embeddings=True,
                          use_cache=False, attn_implementation=a.attn)
        model = LlamaForCausalLM(cfg).float().train()
    assert model.config._attn_implementation == a.attn
    if a.grad_checkpointing:
        kw = {"use_reentrant": False}  # checkpoint every decoder layer
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    n_params = sum(q.numel() for q in model.parameters())  # deduplicates the tied weight
    if a.lora_rank:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=a.lora_rank, lora_alpha=2 * a.lora_rank, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    params = [q for q in model.parameters() if q.requires_grad]
    n_trainable = sum(q.numel() for q in params)
    opt = torch.optim.AdamW(
        [{"params": [q for q in params if q.ndim >= 2], "weight_decay": 0.1},
         {"params": [q for q in params if q.ndim < 2], "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.999), eps=1e-8)

    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=gen)
               for _ in range(a.warmup + a.steps)]
    mask = torch.ones(a.batch, a.seq, dtype=torch.long)
    half = a.seq // 2
    keep = torch.arange(half - 1, a.seq - 1)  # last-half: the positions that predict a token

    def step(ids):
        opt.zero_grad(set_to_none=True)
        if a.loss_on == "all":
            loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        else:
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, half:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        return loss.item()

    losses, times = [], []
    for i, ids in enumerate(batches):
        t0 = time.perf_counter()
        loss = step(ids)
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= a.warmup:
            times.append(dt)
        if not a.json:
            tag = "warmup" if i < a.warmup else "step"
            print(f"{tag} {i}: loss {loss:.4f}  {dt:.3f} s", file=sys.stderr)

    med = statistics.median(times)
    tokens = a.batch * a.seq
    out = {
        "impl": "pytorch", "torch": torch.__version__, "shape": a.shape,
        "batch": a.batch, "seq": a.seq, "threads": a.threads, "steps": a.steps,
        "params": n_params, "median_s": med, "min_s": min(times),
        "tokens_per_s": tokens / med, "gflops": 6 * n_params * tokens / med / 1e9,
        "peak_rss_mib": rss_mib("VmHWM"), "baseline_rss_mib": baseline,
        "losses": losses, "grad_checkpointing": a.grad_checkpointing, "attn": a.attn,
        "lora_rank": a.lora_rank, "trainable_params": n_trainable, "loss_on": a.loss_on,
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"pytorch {out['torch']}  shape {a.shape}  params {n_params:,}  "
              f"B={a.batch} T={a.seq} threads={a.threads} attn={a.attn} "
              f"grad_ckpt={a.grad_checkpointing}")
        print(f"median {med:.3f} s/step  min {out['min_s']:.3f} s  "
              f"{out['tokens_per_s']:.1f} tok/s  {out['gflops']:.1f} GFLOP/s")
        print(f"peak RSS {out['peak_rss_mib']:.0f} MiB  (baseline before model "
              f"{baseline:.0f} MiB)")
        print("losses: " + " ".join(f"{x:.4f}" for x in losses))


if __name__ == "__main__":
    main()
