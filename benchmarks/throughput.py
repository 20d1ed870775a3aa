#!/usr/bin/env python
"""Training images/s of fmbench's engine against a plain PyTorch tutorial loop, alternating in one process.

    python benchmarks/throughput.py --data-dir ../shared/datasets/fashion-mnist [--models cnn_seed,vit_seed]
        [--steps 5] [--rounds 3] [--threads N] [--json throughput.json]

The same code as `fmbench bench` (fmbench/bench.py; the reference loop is fmbench/reference.py).
Prints a table (reference and fmbench images/s, the median per-round ratio, inference images/s at
batch 1024, single-image latency, peak RSS) and optionally writes JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see docs/performance.md

import sys  # noqa: E402

from fmbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
