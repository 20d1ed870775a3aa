"""`fmbench tune`: search a model's hyperparameters with Optuna; the chosen recipe goes to DIR/best.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmbench.cli.common import (RAW, add_data_args, add_device_args, add_training_args, check_out_dir, load_data,
                                overrides_from)

EPILOG = """examples:
  fmbench tune cnn_seed --trials 20                  20 trials over cnn_seed's search space (`fmbench models` shows it)
  fmbench tune vit_seed --budget 2h --set train_size=10000     as many trials as 2 hours allow, on 10,000 images
  fmbench tune cnn_seed --trials 20 --set epochs=3 --space lr=1e-3..1e-2:log --space 'batch_size=128|256'
  fmbench train cnn_seed --recipe fmbench-tune/best.json       train the chosen recipe
  fmbench tune cnn_seed --trials 40 --storage postgresql://me@db/fmbench    the same on N machines: they share
                                                     the 40 trials (docs/design.md, "Search")
Run the same command again to continue an interrupted search.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="search a model's hyperparameters (Optuna)", formatter_class=RAW, epilog=EPILOG,
                       description="Search a model's declared hyperparameter space with Optuna (seeded TPE, "
                                   "pruning on each epoch's validation accuracy). Each trial is a run directory "
                                   "under DIR/trials, chosen on the validation split alone; the test set is "
                                   "evaluated once, for the chosen recipe, written to DIR/best.json with the "
                                   "report DIR/tune.md.")
    p.add_argument("model", help="registered model name, e.g. cnn_seed")
    add_training_args(p, set_note=", fixed outside the search (e.g. train_size=10000 for a quick search)")
    p.add_argument("--trials", type=int, metavar="N", help="end when the study has N trials (all workers together)")
    p.add_argument("--budget", metavar="DURATION",
                   help="end after this much wall-clock time, e.g. 90s, 20m, 1.5h (the last trial started finishes)")
    p.add_argument("--space", action="append", metavar="KEY=RANGE",
                   help="search KEY over LOW..HIGH, LOW..HIGH:log or 'A|B|C' (quoted for the shell; repeatable; "
                        "adds to or replaces the model's space)")
    p.add_argument("--out", type=Path, default=Path("fmbench-tune"), metavar="DIR",
                   help="the search's directory: trials/, best.json, tune.md (default: fmbench-tune)")
    p.add_argument("--storage", metavar="URL",
                   help="where the study lives (default: DIR/study.journal): sqlite:///FILE, postgresql://..., "
                        "mysql://... or a journal file's path; workers given one URL share the trials")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    p.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                   help="stop trials early on their validation accuracy (default: median)")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench import api
    from fmbench.config import parse_set_args

    space = parse_set_args(args.space, "--space", "lr=1e-4..1e-2:log")
    try:
        tuned = api.tune(args.model, args.preset, trials=args.trials, budget=args.budget, out=check_out_dir(args.out),
                         storage=args.storage, seed=args.seed, space=space, pruner=args.pruner,
                         data=lambda: load_data(args), device=args.device, **overrides_from(args))
    except KeyboardInterrupt:
        print("\ninterrupted; finished trials are kept and the interrupted one resumes where it stopped. "
              "Run the same command again to continue.", file=sys.stderr)
        return 130
    r = tuned.recipe
    test = "not evaluated here (see the report)" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
    print(f"chosen: trial {r['trial']}, validation accuracy {r['value']:.4f}, test accuracy {test}")
    print(f"recipe: {tuned.path}\nreport: {tuned.report}\ntrain it: fmbench train {args.model} --recipe {tuned.path}")
    return 0
