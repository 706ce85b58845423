#!/usr/bin/env python3
"""TRL's twin of bench/sft_gsm8k.toml: real SFT, the same data and settings as `keel train`.

SFTTrainer (TRL) on the first EXAMPLES GSM8K training examples as prompt/completion chat turns
(the worked solution with GSM8K's <<calculator>> annotations removed, as keel's `cot` target
does), loss on the completion only, micro-batch 4, accumulation 4, constant LR 1e-5 without
warm-up, AdamW without weight decay, clipping at 1, max length 512, float32, THREADS threads.
The model is keel's Hugging Face conversion of the default GGUF (`keel convert`), so both
start from the same weights. Prints one JSON line: wall time of trainer.train(), steps,
tokens seen, peak RSS.

    python bench/sft_trl.py HF_DIR [--examples 128] [--steps 8] [--threads 2]
"""

import argparse
import json
import re
import resource
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/gsm8k/train.jsonl")
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = [json.loads(l) for l in open(a.data, encoding="utf-8")][: a.examples]
    strip = lambda s: re.sub(r"<<[^>]*>>", "", s)
    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": r["question"]}],
             "completion": [{"role": "assistant", "content": strip(r["answer"])}]}
            for r in rows
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    config = SFTConfig(
        output_dir="/tmp/keel-bench-trl", max_steps=a.steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=4, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, max_length=512, packing=False, completion_only_loss=True,
        bf16=False, fp16=False, use_cpu=True, logging_steps=1, save_strategy="no", report_to=[],
        dataloader_num_workers=0, seed=0, data_seed=0,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    tokens = sum(len(x["input_ids"]) for x in trainer.train_dataset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "trl", "seconds": seconds, "steps": a.steps, "examples": a.examples,
                      "dataset_tokens": tokens, "final_loss": result.training_loss, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
