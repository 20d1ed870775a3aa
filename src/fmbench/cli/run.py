"""`fmbench run`: the main job. Train the models, evaluate them alike, write the comparison report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmbench.cli.common import (RAW, add_data_args, add_device_args, add_sharing_args, add_training_args, check_out_dir,
                                load_data, overrides_from)

EPILOG = """examples:
  fmbench run                                      the study's CNN and ViT on their fast recipes, beside the
                                                   shipped cnn_best, vit_best and hybrid_best (~9 min on 2 CPU cores)
  fmbench run --pretrained                         the five models' shipped weights, evaluated only (~3 min)
  fmbench run --preset seed                        cnn_seed and vit_seed on the study's exact recipe (hours on a CPU)
  fmbench run --seeds 3 --out study3               3 seeds per trained model: mean +- std and a test over seeds
  fmbench run --models cnn_seed --set epochs=3     any --set applies to every trained model
  fmbench run --recipe cnn/best.json --recipe vit/best.json --seeds 3    two searches' recipes (fmbench tune)
  fmbench run --seeds 3 --workers 2 --set threads=1
                                                   two processes of one thread share its 8 runs
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train both models and write the comparison report", formatter_class=RAW,
                       epilog=EPILOG,
                       description="Train each model (reusing finished runs with the same config, resuming "
                                   "interrupted ones), evaluate all of them on the same test set, and write "
                                   "report.md, report.html and figures to the output directory.")
    p.add_argument("--models", help="comma-separated model names (default: the default study: cnn_seed and "
                                    "vit_seed trained with preset fast, cnn_best, vit_best and hybrid_best "
                                    "shipped)")
    add_training_args(p, " for every trained model")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="train each model N times (seeds count up)")
    p.add_argument("--out", type=Path, default=Path("fmbench-study"), metavar="DIR",
                   help="output directory: report and runs/ (default: fmbench-study)")
    p.add_argument("--recipe", action="append", type=Path, default=[], metavar="FILE",
                   help="train a search's chosen recipe (fmbench tune's best.json; repeatable; beside --models)")
    p.add_argument("--pretrained", action="store_true",
                   help="evaluate shipped weights instead of training (default: every shipped model)")
    add_device_args(p)
    add_sharing_args(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench import api
    from fmbench.engine import distributed as D

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else None
    command = "fmbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "fmbench run"
    try:
        report = api.run_study(models, args.preset, seeds=args.seeds, out=check_out_dir(args.out),
                               pretrained=args.pretrained, recipes=args.recipe, data=lambda: load_data(args),
                               device=args.device, command=command, storage=args.storage, workers=args.workers,
                               **overrides_from(args))
    except KeyboardInterrupt:
        print("\ninterrupted; finished runs are kept and the interrupted one resumes where it stopped. "
              "Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        D.teardown()
    if report is not None:
        print(f"report: {report}")
    return 0
