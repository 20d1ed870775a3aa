#!/usr/bin/env python
"""The plain-PyTorch reference: how a typical tutorial trains cnn_seed or vit_seed (see fmbench/reference.py).

    python benchmarks/reference_loop.py --model cnn_seed --steps 20 --data-dir ../shared/datasets/fashion-mnist

A Dataset that augments one image at a time, a DataLoader (shuffle, batch 1024 for the CNN and 256
for the ViT, num_workers=0: 2 cores, which PyTorch's intra-op threads already use), fp32, Adam.
This script trains it alone and prints images/s; `fmbench bench` times it against the engine.
The implementation lives in the package (fmbench.reference) so that both use the same code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from fmbench.data import load_fashion_mnist
from fmbench.reference import REFERENCES, make_reference, train_steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=REFERENCES, default="cnn_seed")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps to time (after one warm-up step)")
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args(argv)
    data = load_fashion_mnist(args.data_dir)
    ref = make_reference(args.model, data.train_images, data.train_labels)
    batches = ref.batches()
    train_steps(ref, batches, 1)
    t = time.perf_counter()
    seen = train_steps(ref, batches, args.steps)
    dt = time.perf_counter() - t
    print(f"reference {args.model}: {seen} images in {dt:.1f} s = {seen / dt:,.0f} img/s "
          f"({torch.get_num_threads()} threads, fp32, batch {ref.batch_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
