"""`fmbench predict`: classify image files with a trained run (or shipped weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmbench.cli.common import RAW, add_device_args, model_name, shipped_model

EPILOG = """examples:
  fmbench predict runs/cnn_seed-fast-seed42-1a2b3c4d shoe.jpg shirt.png
  fmbench predict --weights cnn_best photo.jpg --top 3 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files", formatter_class=RAW, epilog=EPILOG,
                       description="Classify PNG/JPEG images of any size or mode. Each is converted to the "
                                   "model's input: grayscale, 28x28 keeping the aspect ratio, and inverted "
                                   "when its background is light (Fashion-MNIST shows light garments on black).")
    p.add_argument("paths", nargs="*", metavar="[RUN_DIR] IMAGE", help="run directory (omit with --weights), then image files")
    p.add_argument("--weights", metavar="NAME_OR_PATH", help="use shipped weights instead of a run directory")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many classes to show (default: 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_device_args(p)
    p.set_defaults(func=run, trailing_positionals="paths")


def run(args: argparse.Namespace) -> int:
    from fmbench import CLASSES, api
    from fmbench.errors import ConfigError

    paths = [Path(p) for p in args.paths]
    if args.weights:
        run_dir, images = None, paths
    elif not paths:
        raise ConfigError("give a RUN_DIR or --weights NAME_OR_PATH, then IMAGE files")
    else:
        run_dir, images = paths[0], paths[1:]
    if not images:
        raise ConfigError("no IMAGE given")
    if not 1 <= args.top <= len(CLASSES):
        raise ConfigError(f"--top must be between 1 and {len(CLASSES)}, got {args.top}")
    model_or_run = shipped_model(args.weights) if args.weights else run_dir
    predictions = api.predict(model_or_run, images, top=args.top, device=args.device, precision=args.precision)
    results = [{"image": str(path), "top": [{**t, "probability": round(t["probability"], 6)} for t in p["top"]]}
               for path, p in zip(images, predictions)]
    if args.json:
        print(json.dumps({"model": model_name(model_or_run), "predictions": results}))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"]))
    return 0
