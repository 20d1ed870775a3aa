#!/usr/bin/env python
"""Test accuracy of trained models under test-time views: none, flips, 1-pixel shifts, both (airbench's TTA).

    python benchmarks/tta_views.py cnn_best vit_best hybrid_best runs/record-vit_best [--json F]

Each MODEL is a shipped weights name (src/fmbench/weights/: cnn_seed, vit_seed, cnn_best, vit_best,
hybrid_best) or a run directory. The network's own logits (`_logits` where the model has test-time
flips, which are then left out) are averaged over views of each test image, as airbench94's `infer`
does at `tta_level` 1 and 2 ("Translate the image by one pixel either
up-and-left or down-and-right", from a 1-pixel reflect padding):

    plain             logits(x)
    mirror            (logits(x) + logits(flip(x))) / 2                  what `tta_flip` does
    translate         logits(x) / 2 + (logits(up_left(x)) + logits(down_right(x))) / 4
    mirror_translate  mirror(x) / 2 + (mirror(up_left(x)) + mirror(down_right(x))) / 4   airbench tta_level 2

in the model's run precision (bf16 where the CPU has it), so `mirror` matches the accuracy the run
or card reports, up to bf16 rounding across batch sizes. It measures what a view is worth on
weights already trained, with the arithmetic of the models' own switches (`tta_flip`, `tta_shift`:
models/layers.py `tta_views`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fmbench.data import load_fashion_mnist
from fmbench.data.batches import to_input
from fmbench.errors import FmbenchError
from fmbench.models.layers import merge_views, tta_views, view_batch
from fmbench.runtime import autocast, choose_precision

VIEWS = {"plain": (False, False), "mirror": (True, False), "translate": (False, True),
         "mirror_translate": (True, True)}       # name: (tta_flip, tta_shift), the models' own views


def view_logits(net, x: torch.Tensor, view: str) -> torch.Tensor:
    """The mean logits of `x` under `view` (a name in VIEWS), as a model with those switches averages
    them (models/layers.py); `net` maps images to logits."""
    views = tta_views(*VIEWS[view])
    return merge_views(net(view_batch(x, views)), x.shape[0], views)


def load(name_or_dir: str) -> tuple[torch.nn.Module, str]:
    """(model in eval mode on the CPU, its run precision) from a shipped name or a run directory."""
    from fmbench.runs import load_model
    from fmbench.weights import available, load_shipped

    if name_or_dir in available():
        model, spec = load_shipped(name_or_dir)
    elif (Path(name_or_dir) / "config.json").is_file():
        model, spec = load_model(Path(name_or_dir), torch.device("cpu"))
    else:
        raise FmbenchError(f"{name_or_dir}: neither a shipped weights name ({', '.join(available())}) "
                           f"nor a run directory")
    return model.eval(), choose_precision(spec.train_cfg.precision, torch.device("cpu"))


@torch.inference_mode()
def accuracies(model: torch.nn.Module, precision: str, images: torch.Tensor, labels: torch.Tensor,
               batch: int = 2000) -> dict[str, float]:
    """Test accuracy under each view."""
    network = getattr(model, "_logits", model)     # FlipAveraged models: the network without their own flips
    out = {}
    for view in VIEWS:
        logits = []
        for start in range(0, len(images), batch):
            with autocast(images.device, precision):
                logits.append(view_logits(network, to_input(images[start:start + batch]), view).float())
        out[view] = round((torch.cat(logits).argmax(1) == labels).float().mean().item(), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("models", nargs="+", metavar="MODEL", help="shipped weights name or run directory")
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true", help="skip SHA-256 verification (MNIST-like data sets)")
    p.add_argument("--json", help="also write the result as JSON")
    args = p.parse_args(argv)
    try:
        models = {m: load(m) for m in args.models}        # refuse a bad name before reading the data
        data = load_fashion_mnist(args.data_dir, verify=not args.no_verify)
        result = {}
        for name, (model, precision) in models.items():
            result[name] = accuracies(model, precision, data.test_images, data.test_labels)
            print(f"{name:>24}  " + "  ".join(f"{v} {a:.2%}" for v, a in result[name].items()), flush=True)
    except FmbenchError as e:
        print(f"tta_views: {e}", file=sys.stderr)
        return 2
    if args.json:
        from fmbench.fileio import write_json
        write_json(args.json, {"test_accuracy": result, "views": list(VIEWS)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
