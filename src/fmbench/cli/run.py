"""`fmbench run`: the main job. Train the models, evaluate them alike, write the comparison report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, add_device_args, load_data, overrides_from

EPILOG = """examples:
  fmbench run                                      cnn_seed vs vit_seed, quick preset (~10 min on 2 CPU cores)
  fmbench run --preset seed                        the study's exact hyperparameters (hours on a CPU)
  fmbench run --seeds 3 --out study3               3 seeds per model: mean +- std and a test over seeds
  fmbench run --models cnn_seed --set epochs=3     any --set applies to every model
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train both models and write the comparison report", formatter_class=RAW,
                       epilog=EPILOG,
                       description="Train each model (reusing finished runs with the same config, resuming "
                                   "interrupted ones), evaluate all of them on the same test set, and write "
                                   "report.md, report.html and figures to the output directory.")
    p.add_argument("--models", default="cnn_seed,vit_seed", help="comma-separated model names (default: cnn_seed,vit_seed)")
    p.add_argument("--preset", default="quick", help="preset for every model (default: quick)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting for every model")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="train each model N times (seeds count up)")
    p.add_argument("--out", type=Path, default=Path("fmbench-study"), metavar="DIR",
                   help="output directory: report and runs/ (default: fmbench-study)")
    p.add_argument("--pretrained", action="store_true", help="evaluate the shipped weights instead of training")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench.engine import distributed as D
    from fmbench.study import plan_runs, run_study

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    command = "fmbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "fmbench run"
    if not args.pretrained:
        plan_runs(models, args.preset, overrides_from(args), args.seeds, args.out)  # bad options fail before loading data
    data = load_data(args)
    if args.pretrained:
        from fmbench.weights import pretrained_study

        report = pretrained_study(models, args.out, data, args.device, command=command)
    else:
        try:
            report = run_study(models, args.preset, overrides_from(args), args.seeds, args.out, data,
                               args.device, command=command)
        except KeyboardInterrupt:
            print(f"\ninterrupted; finished runs are kept and the interrupted one resumes where it stopped. "
                  f"Run the same command again to continue.", file=sys.stderr)
            return 130
        finally:
            D.teardown()
    if report is not None:
        print(f"report: {report}")
    return 0
