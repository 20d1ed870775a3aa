"""`fmbench study data-size`, `robustness` and `equal-budget`: why the ViT trails, measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmbench.cli.common import (RAW, add_data_args, add_device_args, add_sharing_args, add_training_args, check_out_dir,
                                load_data, overrides_from)
from fmbench.cli.study_budget import register_equal_budget

EPILOG = """examples:
  fmbench study data-size                                   cnn_seed and vit_seed (fast), 6 sizes, 2 seeds (~45 min)
  fmbench study data-size --sizes 1000,5000 --seeds 1 --out ds
  fmbench study data-size --workers 2 --set threads=1       two processes of one thread share the runs
  fmbench study robustness                                  every shipped model, 14 corruptions x 5 severities
  fmbench study robustness runs/cnn_seed-fast-seed42-1a2b3c4d --weights vit_best --corruptions rotate,gaussian_blur
  fmbench study equal-budget --budget 20m --set train_size=10000    each model searched for 20 min, then 3 seeds
  fmbench compare fmbench-study/runs/* robustness-study    add a study's section to the main report
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="data-efficiency, robustness and equal-budget studies", formatter_class=RAW,
                       epilog=EPILOG,
                       description="Studies that explain the CNN-ViT gap: accuracy against training-set size "
                                   "(data-size), under corruptions (robustness) and after an equal hyperparameter "
                                   "search (equal-budget). Each writes a JSON result and a report into --out.")
    kinds = p.add_subparsers(dest="study", metavar="STUDY")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])     # `fmbench study` alone: its own help

    d = kinds.add_parser("data-size", help="accuracy against training-set size", formatter_class=RAW, epilog=EPILOG,
                         description="Train each model on nested, stratified subsets of the training split "
                                     "(validation and test stay fixed), reusing finished runs.")
    d.add_argument("--models", default="cnn_seed,vit_seed", help="comma-separated models (default: cnn_seed,vit_seed)")
    add_training_args(d, " for every model")
    d.add_argument("--sizes", help="training-set sizes (default: 1000,2000,5000,10000,20000,54000)")
    d.add_argument("--seeds", type=int, default=2, metavar="N", help="seeds per model and size (default: 2)")
    d.add_argument("--out", type=Path, default=Path("data-size-study"), metavar="DIR",
                   help="output directory (default: data-size-study)")
    add_device_args(d)
    add_sharing_args(d)
    add_data_args(d)
    d.set_defaults(func=run_data_size)

    r = kinds.add_parser("robustness", help="accuracy under corruptions", formatter_class=RAW, epilog=EPILOG,
                         description="Evaluate models on test images under seeded corruptions (noise, blur, "
                                     "contrast, geometry, occlusion, elastic, inversion) at severities 1-5.")
    r.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="trained runs to test")
    r.add_argument("--weights", metavar="NAME,...", help="shipped weights to test (default when no RUN_DIR: all)")
    r.add_argument("--corruptions", metavar="NAME,...", help="default: all 14 (see fmbench/corruptions.py)")
    r.add_argument("--severities", default="1-5", help="e.g. 1-5 (default), 3, or 1,3,5")
    r.add_argument("--images", default=str(2000), metavar="N|all",
                   help="test images per condition: a stratified, seeded choice (default: 2000; all: 10,000)")
    r.add_argument("--baseline", metavar="LABEL", help="the model mCE is relative to (default: the first)")
    r.add_argument("--out", type=Path, default=Path("robustness-study"), metavar="DIR",
                   help="output directory (default: robustness-study)")
    add_device_args(r)
    add_data_args(r)
    r.set_defaults(func=run_robustness, trailing_positionals="run_dirs")

    register_equal_budget(kinds, EPILOG)


def run_data_size(args: argparse.Namespace) -> int:
    from fmbench import api

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    report = api.study_data_size(models, args.sizes, seeds=args.seeds, preset=args.preset,
                                 out=check_out_dir(args.out), data=lambda: load_data(args), device=args.device,
                                 storage=args.storage, workers=args.workers, **overrides_from(args))
    print(f"report: {report}")
    return 0


def run_robustness(args: argparse.Namespace) -> int:
    from fmbench import api

    images = None if args.images == "all" else _whole(args.images, "--images")
    names = [w.strip() for w in args.weights.split(",") if w.strip()] if args.weights else []
    report = api.study_robustness(args.run_dirs, names, corruptions=args.corruptions, severities=args.severities,
                                  images=images, baseline=args.baseline, out=check_out_dir(args.out),
                                  data=lambda: load_data(args), device=args.device)
    print(f"report: {report}")
    return 0


def _whole(text: str, option: str) -> int:
    from fmbench.errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give a whole number or 'all'") from None
