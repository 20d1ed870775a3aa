"""`fmbench predict`: classify image files with a trained run (or shipped weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmbench.cli.common import RAW, add_device_args

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
    from fmbench import CLASSES
    from fmbench.engine.loop import predict_logits
    from fmbench.errors import ConfigError
    from fmbench.imagefiles import load_images
    from fmbench.runtime import choose_device, choose_precision
    from fmbench.training import load_model

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
    device = choose_device(args.device)
    x = load_images(images).to(device)  # bad images fail before any model is loaded
    if args.weights:
        from fmbench.weights import load_shipped

        model, rc = load_shipped(args.weights, device)
    else:
        model, rc = load_model(run_dir, device)
    classes = (rc.data or {}).get("classes") or CLASSES        # the names the run was trained with
    precision = choose_precision(args.precision or rc.train_cfg.precision, device)
    probs = predict_logits(model, x, 256, precision).softmax(1).cpu()
    top_p, top_i = probs.topk(args.top, dim=1)
    results = [{"image": str(path), "top": [{"class": classes[i], "index": int(i), "probability": round(float(p), 6)}
                                            for p, i in zip(top_p[n], top_i[n])]}
               for n, path in enumerate(images)]
    if args.json:
        print(json.dumps({"model": rc.model, "predictions": results}))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"]))
    return 0
