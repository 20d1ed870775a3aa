"""`fmbench export`: a trained run or shipped weights as an ONNX file, checked with ONNX Runtime."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args

EPILOG = """examples:
  fmbench export --weights cnn_best --onnx cnn_best.onnx
  fmbench export runs/vit_seed-fast-seed42-1a2b3c4d --onnx vit.onnx --opset 18
  fmbench evaluate --onnx cnn_best.onnx            the exported file on the test set, with ONNX Runtime
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX", formatter_class=RAW, epilog=EPILOG,
                       description="Write an ONNX file (dynamic batch; input float32 (N, 1, 28, 28) in [0, 1], "
                                   "light garment on dark; output logits (N, 10)) and a card FILE.json beside it, "
                                   "after checking it with ONNX Runtime on 1,000 real test images.")
    p.add_argument("run_dir", nargs="?", type=Path, help="run directory (or --weights)")
    p.add_argument("--weights", metavar="NAME_OR_PATH", help="shipped weights instead of a run directory")
    p.add_argument("--onnx", type=Path, required=True, metavar="FILE.onnx", help="where to write the ONNX file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench.cli.common import check_out_dir, load_data
    from fmbench.errors import ConfigError
    from fmbench.export import export_onnx

    if bool(args.run_dir) == bool(args.weights):
        raise ConfigError("give either RUN_DIR or --weights NAME_OR_PATH")
    if args.onnx.suffix != ".onnx":
        raise ConfigError(f"--onnx {args.onnx}: the file name must end in .onnx")
    check_out_dir(args.onnx.parent if str(args.onnx.parent) else Path("."))
    if args.weights:
        from fmbench.weights import load_shipped, resolve

        model, rc = load_shipped(args.weights, "cpu")
        source = {"weights": args.weights, "sha256": hashlib.sha256(resolve(args.weights)[0].read_bytes()).hexdigest()}
    else:
        from fmbench.training import load_model, weights_file

        model, rc = load_model(args.run_dir, "cpu")
        source = {"run_dir": str(args.run_dir), "config_hash": rc.hash,
                  "sha256": hashlib.sha256(weights_file(args.run_dir, rc).read_bytes()).hexdigest()}
    data = load_data(args)
    card = export_onnx(model, rc.model, source, args.onnx, data.test_images, args.opset)
    if args.json:
        print(json.dumps(card))
    else:
        c = card["check"]
        print(f"wrote {args.onnx} ({card['bytes'] / 1e6:.2f} MB, opset {card['opset']}) and its card "
              f"{args.onnx.with_suffix('.json').name}; ONNX Runtime vs PyTorch on {c['images']} test images: "
              f"top-1 agreement {c['top1_agreement']:.2%}, largest probability difference {c['max_prob_diff']:.2e}")
    return 0
