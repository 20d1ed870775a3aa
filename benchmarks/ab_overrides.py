#!/usr/bin/env python
"""Training images/s of one model's preset under several `--set` variants, alternating rounds in one process.

    python benchmarks/ab_overrides.py --model vit_best --preset fast \\
        --variant plain=spt=false,lsa=false --variant spt=spt=true,lsa=false \\
        --variant lsa=spt=false,lsa=true --variant both=spt=true,lsa=true [--steps 30] [--rounds 4] [--json F]

Each variant is built as `fmbench train MODEL --preset P --set ...` builds it and trains `--steps`
optimizer steps per round (the engine's own epoch loop: augmentation, precision, the CPU view);
the rounds alternate between the variants, so a noisy shared machine slows them alike. Prints each
variant's median images/s and its median per-round ratio to the first variant (a speed ratio, not
a time: compare ratios, not images/s, across machines).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see docs/performance.md

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

from fmbench.bench import fmbench_side  # noqa: E402
from fmbench.config import parse_set_args  # noqa: E402
from fmbench.data import load_fashion_mnist  # noqa: E402
from fmbench.errors import FmbenchError  # noqa: E402
from fmbench.models import resolve_config  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    """'NAME=key=value,key=value' -> (NAME, overrides); 'NAME=' is the preset unchanged."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise FmbenchError(f"--variant {text!r}: expected NAME=key=value[,key=value...]")
    return name, parse_set_args([item for item in rest.split(",") if item])


def measure(model_name: str, preset: str, variants: dict[str, dict], steps: int, rounds: int, data) -> dict:
    # each side as `fmbench bench` builds its fmbench side (fmbench/bench.py), one per variant
    sides = {name: fmbench_side(model_name, data, steps, preset, over)[0] for name, over in variants.items()}
    for run in sides.values():
        run()   # warm-up round, not timed
    speeds = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            speeds[name].append(run())
    first = next(iter(speeds))
    return {"model": model_name, "preset": preset, "steps": steps, "rounds": rounds, "threads": torch.get_num_threads(),
            "variants": {name: {"overrides": variants[name], "images_per_s": round(statistics.median(v), 1),
                                "ratio": round(statistics.median(a / b for a, b in zip(v, speeds[first])), 3)}
                         for name, v in speeds.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--preset")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=key=value,...")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true", help="skip SHA-256 verification (MNIST-like data sets)")
    p.add_argument("--json", help="also write the result as JSON")
    args = p.parse_args(argv)
    try:
        variants = dict(parse_variant(v) for v in args.variant)
        for over in variants.values():
            resolve_config(args.model, args.preset, over)   # refuse a bad name or value before any training
        result = measure(args.model, args.preset, variants, args.steps, args.rounds,
                         load_fashion_mnist(args.data_dir, verify=not args.no_verify))
    except FmbenchError as e:
        print(f"ab_overrides: {e}", file=sys.stderr)
        return 2
    for name, v in result["variants"].items():
        print(f"{name:>12}  {v['images_per_s']:8.1f} img/s  x{v['ratio']:.3f}")
    if args.json:
        from fmbench.fileio import write_json
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
