#!/usr/bin/env python
"""Locality self-attention's scores against plain attention's, forward and backward, alternating in one process.

    python benchmarks/lsa_scores.py [--batch 128] [--rounds 15] [--reps 20]

Times softmax(scores(q, k)) @ v and its backward at vit_best's shape (4 heads of 32 dims, 50
tokens) under bf16 autocast for three ways of making the scores: plain attention as the CPU engine
runs it, LSA as models/vit.locality_scores writes it (the paper's form: scale the scores, then a
masked copy), and LSA as the engine's CPU view runs it (engine/fuse.CpuAttention). Prints the
median milliseconds per layer and each one's median ratio to plain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from fmbench.engine.fuse import CpuAttention
from fmbench.models.vit import Attention, locality_scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    plain_view, lsa_view = CpuAttention(Attention(128, 4, 0.0)), CpuAttention(Attention(128, 4, 0.0, lsa=True))
    log_scale = lsa_view.log_scale
    q, k, v = (torch.randn(args.batch, 4, 50, 32, requires_grad=True) for _ in range(3))
    ways = {"plain (CPU view)": plain_view._scores, "LSA (models/vit.py)": lambda a, b: locality_scores(a, b, log_scale),
            "LSA (CPU view)": lsa_view._scores}

    def step(scores) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = scores(q, k).softmax(-1) @ v
        out.float().sum().backward()

    ms = {name: [] for name in ways}
    for scores in ways.values():
        step(scores)   # warm-up
    for _ in range(args.rounds):
        for name, scores in ways.items():
            start = time.perf_counter()
            for _ in range(args.reps):
                step(scores)
            ms[name].append((time.perf_counter() - start) / args.reps * 1e3)
    base = ms["plain (CPU view)"]
    for name, times in ms.items():
        ratio = statistics.median(t / b for t, b in zip(times, base))
        print(f"{name:>20}  {statistics.median(times):6.2f} ms per layer  x{ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
