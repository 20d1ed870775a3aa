"""`fmbench export`: a trained run or shipped weights as an ONNX file, checked with ONNX Runtime."""

from __future__ import annotations

import argparse
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
    from fmbench import api
    from fmbench.cli.common import check_out_dir, load_data, model_name, shipped_model
    from fmbench.errors import ConfigError
    from fmbench.export import check_target

    if bool(args.run_dir) == bool(args.weights):
        raise ConfigError("give either RUN_DIR or --weights NAME_OR_PATH")
    check_target(args.onnx, args.opset)
    check_out_dir(args.onnx.parent if str(args.onnx.parent) else Path("."))
    model_or_run = shipped_model(args.weights) if args.weights else args.run_dir
    model_name(model_or_run)                      # a bad run directory fails before the data is loaded
    card = api.export_onnx(model_or_run, args.onnx, opset=args.opset, data=load_data(args))
    if args.json:
        print(json.dumps(card))
    else:
        c = card["check"]
        print(f"wrote {args.onnx} ({card['bytes'] / 1e6:.2f} MB, opset {card['opset']}) and its card "
              f"{args.onnx.with_suffix('.json').name}; ONNX Runtime vs PyTorch on {c['images']} test images: "
              f"top-1 agreement {c['top1_agreement']:.2%}, largest probability difference {c['max_prob_diff']:.2e}")
    return 0
