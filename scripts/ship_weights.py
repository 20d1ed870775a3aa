#!/usr/bin/env python
"""Ship a finished run's best weights in the package: src/fmbench/weights/NAME.safetensors + NAME.json.

    python scripts/ship_weights.py RUN_DIR NAME --data-dir ../shared/datasets/fashion-mnist \\
        --command "fmbench train cnn_seed --preset seed" [--wall-time-s 2700] [--note "..."]

The weights are stored in fp16 and re-evaluated on the real test set; the card records both the
run's own test metrics (`run_test`) and those of the stored weights (`test`). See docs/best-models.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmbench.data import load_fashion_mnist
from fmbench.weights import ship_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("name", help="the shipped name, e.g. cnn_seed")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--command", help="the training command to record (env.json's, if not given)")
    p.add_argument("--wall-time-s", type=float, help="wall time from start to summary.json, if known")
    p.add_argument("--note", help="a note for the card (e.g. pauses during the run)")
    args = p.parse_args(argv)
    data = load_fashion_mnist(args.data_dir, log=lambda s: print(s, file=sys.stderr))
    extra = {k: v for k, v in (("wall_time_s", args.wall_time_s), ("notes", args.note)) if v is not None}
    ship_run(args.run_dir, args.name, data, command=args.command, extra=extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
