#!/usr/bin/env python3
"""PyTorch reference for keel's f32 GEMM benchmark.

Times torch.matmul (float32, K threads) on the matrix shapes that dominate a
SmolLM2-135M training step with B*T = 1024 tokens, and prints GFLOP/s
(2*M*K*N / median seconds, median of 10 runs after 2 warm-ups). The
(576, 1024, 1536) case is a weight-gradient product A^T B with A stored
row-major as 1024 x 576, i.e. torch.matmul(A.t(), B) on a transposed view.

Example:
    python bench/gemm_torch.py --threads 2 --json
"""
import argparse
import json
import statistics
import time

import torch

# (M, K, N, a_transposed); A is M x K (or K x M when transposed), B is K x N,
# both contiguous row-major.
SHAPES = [
    (1024, 1024, 1024, False),
    (1024, 576, 1536, False),   # gate/up projection shape
    (1024, 576, 49152, False),  # LM head shape
    (1024, 1536, 576, False),   # down projection shape
    (576, 1024, 1536, True),    # A^T B, A = 1024x576 row-major (weight gradient)
]


def bench(m, k, n, trans, reps=10, warmup=2):
    g = torch.Generator().manual_seed(0)
    a = torch.randn((k, m) if trans else (m, k), generator=g)
    b = torch.randn(k, n, generator=g)
    lhs = a.t() if trans else a
    out = torch.empty(m, n)
    times = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        torch.matmul(lhs, b, out=out)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    med = statistics.median(times)
    return med, 2.0 * m * k * n / med / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)

    rows = []
    for m, k, n, trans in SHAPES:
        med, gflops = bench(m, k, n, trans)
        rows.append({"m": m, "k": k, "n": n, "a_transposed": trans,
                     "median_s": med, "gflops": gflops})
        if not a.json:
            name = f"{m}x{k}x{n}" + (" (A^T B)" if trans else "")
            print(f"{name:>24}  {med * 1e3:9.2f} ms  {gflops:7.1f} GFLOP/s")
    if a.json:
        print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                          "threads": a.threads, "results": rows}))


if __name__ == "__main__":
    main()
