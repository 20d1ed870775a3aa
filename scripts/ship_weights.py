#!/usr/bin/env python
"""Ship a finished run's best weights in the package: src/fmbench/weights/NAME.safetensors + NAME.json.

    python scripts/ship_weights.py RUN_DIR NAME --data-dir ../shared/datasets/fashion-mnist \\
        --command "fmbench train cnn_seed --preset seed" [--wall-time-s 2700] [--note "..."]

The weights are stored in fp16 and re-evaluated on the real test set; the card records both the
run's own test metrics (`run_test`) and those of the stored weights (`test`). See docs/best-models.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from fmbench.data import load_fashion_mnist
from fmbench.weights import ship_run


def unpaused_train_time(run_dir: Path) -> dict[str, float | int]:
    """train_time_s with paused epochs (over 3x the median) counted as the median, and the raw sum."""
    times = [json.loads(line)["epoch_time_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    median = statistics.median(times)
    paused = [t for t in times if t > 3 * median]
    return {"train_time_s": round(sum(min(t, median) if t > 3 * median else t for t in times), 1),
            "train_time_s_with_pauses": round(sum(times), 1), "paused_epochs": len(paused)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("name", help="the shipped name, e.g. cnn_seed")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--command", help="the training command to record (env.json's, if not given)")
    p.add_argument("--wall-time-s", type=float, help="wall time from start to summary.json, if known")
    p.add_argument("--note", help="a note for the card (e.g. pauses during the run)")
    p.add_argument("--exclude-pauses", action="store_true",
                   help="the run was paused (SIGSTOP) for other measurements: count an epoch that took over "
                        "3x the median epoch time as the median (the card keeps the raw sum too)")
    args = p.parse_args(argv)
    data = load_fashion_mnist(args.data_dir)
    extra = {k: v for k, v in (("wall_time_s", args.wall_time_s), ("notes", args.note)) if v is not None}
    if args.exclude_pauses:
        extra.update(unpaused_train_time(args.run_dir))
    ship_run(args.run_dir, args.name, data, command=args.command, extra=extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
