"""`fmbench explain`: where a model looks in an image (Grad-CAM for CNNs, attention rollout for ViTs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, add_device_args

EPILOG = """examples:
  fmbench explain --weights cnn_best test:409 --out cnn.png
  fmbench explain --weights vit_best test:409 shoe.jpg --out vit.png
  fmbench explain runs/vit_seed-fast-seed42-1a2b3c4d test:0 --method attention --json
  fmbench explain --weights cnn_seed test:409 --faithfulness --json
  fmbench explain runs/cnn_seed-fast-seed42-1a2b3c4d --record
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="show where a model looks in an image", formatter_class=RAW, epilog=EPILOG,
                       description="Saliency maps: Grad-CAM for the CNNs (last convolutional block), attention "
                                   "rollout for the ViTs and the hybrid (or the last layer's attention per head "
                                   "with --method attention; the hybrid takes gradcam too). Images are files (any PNG/JPEG, as for predict) or test-set "
                                   "indices like test:409. Writes one row per image (the image, the map over it).")
    p.add_argument("paths", nargs="*", metavar="[RUN_DIR] IMAGE", help="run directory (omit with --weights), "
                                                                         "then image files or test:INDEX")
    p.add_argument("--weights", metavar="NAME_OR_PATH", help="use shipped weights instead of a run directory")
    p.add_argument("--method", choices=("gradcam", "rollout", "attention"),
                   help="default: gradcam for CNNs, rollout for ViTs and the hybrid")
    p.add_argument("--out", type=Path, metavar="FILE.png", help="write the overlays here (default: explain.png "
                                                                  "unless --json)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image on stdout (one line each)")
    p.add_argument("--faithfulness", action="store_true",
                   help="also measure the maps' faithfulness on the test set (deletion test over 500 images, "
                        "rank correlation with a randomly initialised model)")
    p.add_argument("--record", action="store_true",
                   help="write RUN_DIR's explanation files for the report (explain.json, explain.safetensors); "
                        "runs written by an fmbench without explanations lack them")
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(func=run, trailing_positionals="paths")


def run(args: argparse.Namespace) -> int:
    from fmbench import api
    from fmbench.cli.common import check_out_dir, load_data, shipped_model
    from fmbench.errors import ConfigError
    from fmbench.explain.images import write_overlays
    from fmbench.imagefiles import load_specs, test_index

    paths = list(args.paths)
    if args.record:
        if args.weights or len(paths) != 1:
            raise ConfigError("--record takes one RUN_DIR and no --weights or images")
        api.explain_run(paths[0], load_data(args), device=args.device)
        return 0
    if not args.weights and not paths:
        raise ConfigError("give a RUN_DIR or --weights NAME_OR_PATH, then IMAGE files or test:INDEX")
    run_dir, specs = (None, paths) if args.weights else (Path(paths[0]), paths[1:])
    if not specs:
        raise ConfigError("no IMAGE given (a file, or test:INDEX)")
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: the overlays are written as PNG; give a .png path")
    needs_data = args.faithfulness or any([test_index(s) is not None for s in specs])   # each test:INDEX checked
    data = load_data(args) if needs_data else None
    images = load_specs(specs, data.test_images if data is not None else None)  # before any model is loaded
    model_or_run = shipped_model(args.weights) if args.weights else run_dir
    rows = api.explain_images(model_or_run, images, method=args.method, faithfulness=args.faithfulness, data=data,
                              device=args.device, precision=args.precision)
    out = args.out if args.out is not None else (None if args.json else Path("explain.png"))
    if out is not None:
        check_out_dir(out.parent)
        write_overlays(out, images, rows, specs)
    if args.json:
        for spec, r in zip(specs, rows):
            print(json.dumps(_json_row(spec, r)))
        return 0
    for spec, r in zip(specs, rows):
        print(f"{spec}: {r['class']} {r['probability']:.1%} ({r['model']}, {r['method']})")
    if args.faithfulness:
        d, r = rows[0]["faithfulness"]["deletion"], rows[0]["faithfulness"]["randomisation"]
        print(f"faithfulness: deletion AUC {d['saliency_auc']:.3f} (most salient first) vs {d['random_auc']:.3f} "
              f"(random order) over {d['n']} test images; rank correlation with a random-weight model "
              f"{r['spearman_mean']}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _json_row(spec: str, r: dict) -> dict:
    """One image's line of --json: its maps as nested lists to 4 decimals."""
    def rounded(t) -> list:
        return [rounded(x) for x in t] if t.ndim > 1 else [round(float(v), 4) for v in t]

    row = {"image": spec, "model": r["model"], "predicted": r["class"], "probability": round(r["probability"], 6),
           "method": r["method"], **{k: rounded(r[k]) for k in ("saliency", "heads") if k in r}}
    return {**row, "faithfulness": r["faithfulness"]} if "faithfulness" in r else row
