#!/usr/bin/env python
"""Draw the learning curves of finished runs with the report's own plotting code.

    python scripts/reproduction_figures.py runs/cnn_seed runs/vit_seed --out docs/figures

Writes OUT/reproduction_MODEL.png for each run (train solid, validation dashed, best epoch dotted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmbench.report import load_run
from fmbench.report.plots import learning_curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for d in args.run_dirs:
        r = load_run(d)
        preset = r.config.get("preset", "?")
        path = learning_curves([(f"{r.model} ({preset})", r.epochs, r.summary.get("best_epoch"))],
                               f"{r.model}, preset {preset}", args.out / f"reproduction_{r.model}.png")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
