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
                                   "rollout for the ViTs (or the last layer's attention per head with --method "
                                   "attention). Images are files (any PNG/JPEG, as for predict) or test-set "
                                   "indices like test:409. Writes one row per image (the image, the map over it).")
    p.add_argument("paths", nargs="*", metavar="[RUN_DIR] IMAGE", help="run directory (omit with --weights), "
                                                                         "then image files or test:INDEX")
    p.add_argument("--weights", metavar="NAME_OR_PATH", help="use shipped weights instead of a run directory")
    p.add_argument("--method", choices=("gradcam", "rollout", "attention"),
                   help="default: gradcam for CNNs, rollout for ViTs")
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


def _images(specs: list[str], args: argparse.Namespace):
    """uint8 (N, 28, 28) for files and test:INDEX specs, and the data set when one was needed."""
    import torch

    from fmbench.errors import ConfigError
    from fmbench.imagefiles import load_image

    indices = {}
    for s in specs:
        if s.startswith("test:"):
            try:
                indices[s] = int(s[5:])
            except ValueError:
                raise ConfigError(f"{s}: test:INDEX needs a whole number") from None
    data = None
    if args.faithfulness or indices:
        from fmbench.cli.common import load_data

        data = load_data(args)
    out = []
    for s in specs:
        if s in indices:
            i = indices[s]
            if not 0 <= i < len(data.test_labels):
                raise ConfigError(f"{s}: index out of range (the test set has {len(data.test_labels)} images, "
                                  f"0 to {len(data.test_labels) - 1})")
            out.append(data.test_images[i])
        else:
            out.append(load_image(s))
    return torch.stack(out), data


def run(args: argparse.Namespace) -> int:
    from fmbench import CLASSES
    from fmbench.engine.loop import predict_logits
    from fmbench.errors import ConfigError
    from fmbench.explain import choose_method, head_maps, saliency
    from fmbench.models import get_spec
    from fmbench.runtime import choose_device, choose_precision

    paths = list(args.paths)
    if args.record:
        if args.weights or len(paths) != 1:
            raise ConfigError("--record takes one RUN_DIR and no --weights or images")
        from fmbench.cli.common import load_data
        from fmbench.training import explain_existing

        explain_existing(Path(paths[0]), load_data(args), args.device)
        return 0
    if args.weights:
        run_dir, specs = None, paths
    elif not paths:
        raise ConfigError("give a RUN_DIR or --weights NAME_OR_PATH, then IMAGE files or test:INDEX")
    else:
        run_dir, specs = Path(paths[0]), paths[1:]
    if not specs:
        raise ConfigError("no IMAGE given (a file, or test:INDEX)")
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: the overlays are written as PNG; give a .png path")
    device = choose_device(args.device)
    images, data = _images(specs, args)                  # bad images fail before any model is loaded
    if args.weights:
        from fmbench.weights import load_shipped

        model, rc = load_shipped(args.weights, device)
    else:
        from fmbench.training import load_model

        model, rc = load_model(run_dir, device)
    family = get_spec(rc.model).family
    method = choose_method(family, args.method, rc.model)
    classes = (rc.data or {}).get("classes") or CLASSES
    precision = choose_precision(args.precision or rc.train_cfg.precision, device)
    probs = predict_logits(model, images.to(device), 256, precision).softmax(1).cpu()
    maps = saliency(model, family, images.to(device), method)
    heads = head_maps(model, images.to(device)) if method == "attention" else None
    faith = _faithfulness(model, rc, family, method, data, precision) if args.faithfulness else None

    rows = []
    for n, spec in enumerate(specs):
        p, k = probs[n].max(0)
        row = {"image": spec, "model": rc.model, "predicted": classes[int(k)], "probability": round(float(p), 6),
               "method": method, "saliency": [[round(float(v), 4) for v in r] for r in maps[n]]}
        if heads is not None:
            row["heads"] = [[[round(float(v), 4) for v in r] for r in h] for h in heads[n]]
        if faith is not None:
            row["faithfulness"] = faith
        rows.append(row)
    out = args.out if args.out is not None else (None if args.json else Path("explain.png"))
    if out is not None:
        _write_png(out, images, maps, heads, rows, rc.model, method)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        for row in rows:
            print(f"{row['image']}: {row['predicted']} {row['probability']:.1%} ({rc.model}, {method})")
        if faith is not None:
            d, r = faith["deletion"], faith["randomisation"]
            print(f"faithfulness: deletion AUC {d['saliency_auc']:.3f} (most salient first) vs {d['random_auc']:.3f} "
                  f"(random order) over {d['n']} test images; rank correlation with a random-weight model "
                  f"{r['spearman_mean']}")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _faithfulness(model, rc, family: str, method: str, data, precision: str) -> dict:
    """The deletion test and randomisation check of `method`'s maps, on the images a run's record uses."""
    from fmbench.explain import saliency
    from fmbench.explain.record import deletion_indices, faithfulness_checks

    device = next(model.parameters()).device
    chosen = deletion_indices(len(data.test_labels))
    images, labels = data.test_images[chosen].to(device), data.test_labels[chosen].to(device)
    maps = saliency(model, family, images, method, target=labels)
    return faithfulness_checks(model, rc.model, rc.model_cfg, family, method, images, labels, maps, precision)


def _write_png(out: Path, images, maps, heads, rows: list[dict], model: str, method: str) -> None:
    from fmbench.cli.common import check_out_dir
    from fmbench.fileio import atomic_path
    from fmbench.report.plots import explanation_rows

    check_out_dir(out.parent if str(out.parent) else Path("."))
    columns = [maps.numpy()] + ([heads[:, h].numpy() for h in range(heads.shape[1])] if heads is not None else [])
    titles = [f"{model}: {method}"] + ([f"head {h + 1}" for h in range(heads.shape[1])] if heads is not None else [])
    captions = [f"{Path(r['image']).name}\n{r['predicted']} {r['probability']:.0%}" for r in rows]
    with atomic_path(out) as tmp:
        explanation_rows(images.numpy(), columns, captions, titles, tmp)
