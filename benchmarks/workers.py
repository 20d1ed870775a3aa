#!/usr/bin/env python
"""Two worker processes of one thread against one process of two threads, on the data-size study.

    python benchmarks/workers.py --out /tmp/workers --data-dir ../shared/datasets/fashion-mnist

Runs, one after the other, in fresh directories (threads are a runtime setting, so a shared --out
would reuse the first command's runs):

    fmbench study data-size --sizes 1000,3000,10000 --seeds 1 --workers 2 --set threads=1 --out OUT/workers2
    fmbench study data-size --sizes 1000,3000,10000 --seeds 1 --set threads=2 --out OUT/threads2

(cnn_seed and vit_seed on their `fast` presets, the study's default), and prints each command's
wall-clock time, the sum of its runs' training times, the ratio, and each run's test accuracy beside
the other's (one and two threads may differ in the last digits: reductions split differently).
Meant for an otherwise idle machine with 2 cores; --cores N compares N workers of one thread with
one process of N threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def study(out: Path, extra: list[str], args: argparse.Namespace) -> float:
    """Run the study into `out` (which must not exist); its wall-clock seconds."""
    if out.exists():
        sys.exit(f"{out} exists: give another --out (its runs would be reused, not timed)")
    cmd = [sys.executable, "-m", "fmbench", "study", "data-size", "--models", args.models, "--sizes", args.sizes,
           "--seeds", "1", "--device", "cpu", "--out", str(out), *extra,
           *(["--data-dir", str(args.data_dir)] if args.data_dir else [])]
    print("$", " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def runs_of(out: Path) -> dict[tuple[str, str], dict]:
    result = json.loads((out / "data_size.json").read_text())
    return {(label, size): rows[0] for label, sizes in result["models"].items() for size, rows in sizes.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="a new directory for both studies")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--models", default="cnn_seed,vit_seed")
    p.add_argument("--sizes", default="1000,3000,10000")
    p.add_argument("--cores", type=int, default=2, help="N workers of one thread against one process of N threads")
    args = p.parse_args(argv)
    n = args.cores
    shared = study(args.out / f"workers{n}", ["--workers", str(n), "--set", "threads=1"], args)
    alone = study(args.out / f"threads{n}", ["--set", f"threads={n}"], args)
    a, b = runs_of(args.out / f"workers{n}"), runs_of(args.out / f"threads{n}")
    print(f"\n{'run':<22} {'test acc (workers)':>18} {'test acc (threads)':>18} {'train s (w)':>11} {'train s (t)':>11}")
    for key in a:
        print(f"{key[0] + ' n=' + key[1]:<22} {a[key]['test_accuracy']:>18.4f} {b[key]['test_accuracy']:>18.4f} "
              f"{a[key]['train_time_s']:>11.1f} {b[key]['train_time_s']:>11.1f}")
    print(f"\nwall clock: {n} workers x 1 thread {shared:.1f} s, 1 process x {n} threads {alone:.1f} s: "
          f"the workers take {shared / alone:.2f}x the time")
    print(f"training time summed over runs: {sum(r['train_time_s'] for r in a.values()):.1f} s (workers), "
          f"{sum(r['train_time_s'] for r in b.values()):.1f} s (threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
