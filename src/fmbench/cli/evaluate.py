"""`fmbench evaluate`: metrics of a run's model (or shipped weights) on one split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, add_device_args, load_data, model_name, shipped_model

EPILOG = """examples:
  fmbench evaluate runs/cnn_seed-fast-seed42-1a2b3c4d
  fmbench evaluate runs/vit-try --split val --json
  fmbench evaluate --weights cnn_best               shipped weights, no training
  fmbench evaluate --onnx cnn_best.onnx             an exported file, with ONNX Runtime (test split)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run", formatter_class=RAW, epilog=EPILOG,
                       description="Load a run's model (the weights its recipe keeps) and print loss, accuracy, weighted F1, the "
                                   "per-class report and the confusion matrix for one split.")
    p.add_argument("run_dir", nargs="?", type=Path, help="run directory written by `fmbench train`")
    p.add_argument("--weights", metavar="NAME_OR_PATH", help="shipped weights name (see docs) or a .safetensors with its card")
    p.add_argument("--onnx", type=Path, metavar="FILE.onnx", help="an ONNX file written by `fmbench export`")
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=run)


def format_report(split: str, r: dict, classes: tuple[str, ...]) -> str:
    """The metrics table, per-class report and confusion matrix as text."""
    lines = [f"split {split} ({r['n']} images): loss {r['loss']:.4f}  accuracy {r['accuracy']:.4f}  "
             f"weighted F1 {r['f1_weighted']:.4f}", "",
             f"{'class':<13} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for c in r["per_class"]:
        lines.append(f"{c['class']:<13} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8}")
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              "     " + " ".join(f"{i:>5}" for i in range(len(classes)))]
    for i, row in enumerate(r["confusion_matrix"]):
        lines.append(f"{i:>3}  " + " ".join(f"{v:>5}" for v in row) + f"  {classes[i]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fmbench import api
    from fmbench.errors import ConfigError

    if sum(map(bool, (args.run_dir, args.weights, args.onnx))) != 1:
        raise ConfigError("give one of RUN_DIR, --weights NAME_OR_PATH or --onnx FILE")
    if args.onnx:
        return _run_onnx(args)
    model_or_run = shipped_model(args.weights) if args.weights else args.run_dir
    name = model_name(model_or_run)               # a bad run directory fails before the data is loaded
    data = load_data(args)
    r = api.evaluate(model_or_run, data, args.split, device=args.device, precision=args.precision)
    if args.json:
        print(json.dumps({"split": args.split, "model": name, **r}))
    else:
        print(format_report(args.split, r, data.classes))
    return 0


def _run_onnx(args: argparse.Namespace) -> int:
    """The exported file on the test split, with ONNX Runtime; its card's PyTorch check beside it."""
    from fmbench.errors import ConfigError
    from fmbench.export import evaluate_onnx

    if args.split != "test":
        raise ConfigError("--onnx evaluates the test split only (the file has no record of its validation split)")
    data = load_data(args)
    r = evaluate_onnx(args.onnx, data.test_images, data.test_labels)
    if args.json:
        print(json.dumps({"split": "test", **r}))
    else:
        print(f"{args.onnx} ({r['model'] or 'no card'}), ONNX Runtime")
        print(format_report("test", r, data.classes))
    return 0
