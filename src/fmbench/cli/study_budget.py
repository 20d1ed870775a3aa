"""`fmbench study equal-budget`: each model searched for the same wall-clock time, then compared."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, add_device_args, add_training_args, check_out_dir, load_data, overrides_from


def register_equal_budget(kinds: argparse._SubParsersAction, epilog: str) -> None:
    e = kinds.add_parser("equal-budget", help="each model searched for the same time, then compared", epilog=epilog,
                         formatter_class=RAW,
                         description="Search each model's hyperparameters (fmbench tune: Optuna) for the same "
                                     "wall-clock budget, one after another on this machine, then train each chosen "
                                     "recipe on the full training set with several seeds and write the comparison "
                                     "report, which states the budget, the trials and the pruned trials per model.")
    e.add_argument("--models", default="cnn_seed,vit_seed", help="comma-separated models (default: cnn_seed,vit_seed)")
    add_training_args(e, " for the searches and the final runs (train_size: the searches only)")
    e.add_argument("--budget", required=True, metavar="DURATION", help="each model's search time, e.g. 20m or 1h")
    e.add_argument("--seeds", type=int, default=3, metavar="N", help="final runs per model (default: 3)")
    e.add_argument("--out", type=Path, default=Path("equal-budget-study"), metavar="DIR",
                   help="output directory: search/MODEL, runs/, the report (default: equal-budget-study)")
    e.add_argument("--storage", metavar="URL", help="where the searches' studies live (default: a journal file in "
                                                    "each search directory); see fmbench tune")
    e.add_argument("--search-seed", type=int, default=0, metavar="S", help="the samplers' seed (default: 0)")
    e.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                   help="stop trials early on their validation accuracy (default: median)")
    add_device_args(e)
    add_data_args(e)
    e.set_defaults(func=run_equal_budget)


def run_equal_budget(args: argparse.Namespace) -> int:
    from fmbench import api

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    report = api.study_equal_budget(models, args.budget, seeds=args.seeds, preset=args.preset,
                                    out=check_out_dir(args.out), storage=args.storage, search_seed=args.search_seed,
                                    pruner=args.pruner, data=lambda: load_data(args), device=args.device,
                                    command=" ".join(["fmbench", *map(shlex.quote, sys.argv[1:])]), **overrides_from(args))
    print(f"report: {report}")
    return 0
