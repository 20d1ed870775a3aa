"""`fmbench train`: train one registered model in a run directory, or resume one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmbench.cli.common import (RAW, add_data_args, add_device_args, add_training_args, check_out_dir, load_data,
                                overrides_from)
from fmbench.errors import ConfigError

EPILOG = """examples:
  fmbench train cnn_seed                          its default preset (fast), run directory under runs/
  fmbench train vit_seed --preset seed            the study's exact hyperparameters
  fmbench train cnn_seed --set epochs=5 --set lr=3e-4 --out runs/cnn-try
  fmbench train cnn_seed --recipe fmbench-tune/best.json     the recipe a search chose (`fmbench tune`)
  fmbench train --resume runs/cnn-try             continue an interrupted run
  torchrun --nproc-per-node 2 -m fmbench train cnn_seed     data parallel over 2 processes
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model", formatter_class=RAW, epilog=EPILOG,
                       description="Train a registered model (see `fmbench models`) and evaluate it. "
                                   "Writes config, metrics per epoch, checkpoints and the final "
                                   "evaluation to a run directory.")
    p.add_argument("model", nargs="?", help="registered model name, e.g. cnn_seed or vit_seed")
    add_training_args(p)
    p.add_argument("--recipe", type=Path, metavar="FILE",
                   help="a search's best.json (`fmbench tune`): its preset and settings; --set changes them")
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: runs/MODEL-PRESET-seedN-HASH)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="resume an interrupted run")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench import api, runs
    from fmbench.rundir import is_complete
    from fmbench.spec import make_spec, read_spec
    from fmbench.tuning.recipe import apply_recipe

    if args.resume and args.model:
        raise ConfigError("give either MODEL or --resume RUN_DIR, not both")
    if not args.resume and not args.model:
        raise ConfigError("missing MODEL (see `fmbench models`) or --resume RUN_DIR")
    if args.resume and args.recipe:
        raise ConfigError("--recipe does not apply to --resume (the run keeps its own settings)")
    if args.resume:
        read_spec(args.resume)                        # fail before loading the data where we can
        run_dir = args.resume
    else:
        preset, overrides = apply_recipe(args.recipe, args.model, args.preset, overrides_from(args))
        spec = make_spec(args.model, preset, overrides)
        if args.out:
            check_out_dir(args.out)
    data = load_data(args)
    if not args.resume:
        run_dir = check_out_dir(args.out or runs.run_dir_for(spec.on(data, args.device)))  # named by its identity
        if is_complete(run_dir):
            raise ConfigError(f"{run_dir} already holds a finished run; choose another --out")
    try:
        if args.resume:
            api.resume(run_dir, data, args.device)
        else:
            api.train(args.model, preset, out=run_dir, data=data, device=args.device, **overrides)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last finished epoch is saved. Resume with:\n"
              f"  fmbench train --resume {run_dir}", file=sys.stderr)
        return 130
    print(f"run directory: {run_dir}")
    return 0
