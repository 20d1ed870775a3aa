#!/usr/bin/env python
"""Wall seconds until a model first reaches a TEST accuracy target, through fmbench's own `fit`.

    python benchmarks/time_to_accuracy.py --model cnn_seed --preset fast --target 0.92 \\
        --data-dir ../shared/datasets/fashion-mnist [--json tta.json] [--set epochs=8]

The clock starts once the data set is in memory (it is parsed once and cached) and covers model
construction, the split, every epoch of `engine.loop.fit` (training, validation, checkpoints) and
the test-set evaluation after each epoch, up to the epoch whose test accuracy first reaches the
target. The test set is only looked at for this measurement; `fit` itself never sees it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see docs/performance.md

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from fmbench import training  # noqa: E402
from fmbench.config import parse_set_args  # noqa: E402
from fmbench.data import load_fashion_mnist  # noqa: E402
from fmbench.data.batches import make_splits  # noqa: E402
from fmbench.engine.loop import evaluate, fit  # noqa: E402
from fmbench.models import build_model  # noqa: E402
from fmbench.runtime import choose_device, choose_precision, cpu_name, seed_everything, set_threads  # noqa: E402


def time_to_accuracy(data, model_name: str, preset: str, target: float, overrides: dict | None = None,
                     device_name: str = "cpu", log=print) -> dict:
    """Train with `fit`, evaluating the test set after every epoch; stop at the first epoch >= target."""
    rc = training.make_config(model_name, preset, overrides)
    cfg = rc.train_cfg
    t0 = time.perf_counter()
    set_threads(cfg.threads)
    device = choose_device(device_name)
    precision = choose_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model = build_model(model_name, rc.model_cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    splits = make_splits(data, cfg, device)
    history: list[dict] = []

    def on_epoch(epoch: int, record: dict) -> bool:
        test, _ = evaluate(model, splits.test_x, splits.test_y, cfg, precision)
        history.append({"epoch": epoch, "elapsed_s": round(time.perf_counter() - t0, 2),
                        "test_accuracy": test["accuracy"], "val_accuracy": record["val_accuracy"],
                        "train_images_per_s": record["images_per_s"]})
        log(f"epoch {epoch:>2}  {history[-1]['elapsed_s']:7.1f} s  test accuracy {test['accuracy']:.4f}  "
            f"val {record['val_accuracy']:.4f}  {record['images_per_s']:,.0f} img/s")
        return test["accuracy"] >= target

    with tempfile.TemporaryDirectory(prefix="fmbench-tta-") as run_dir:
        fit(model, splits, cfg, Path(run_dir), precision, log=lambda s: None, on_epoch=on_epoch)
    hit = next((h for h in history if h["test_accuracy"] >= target), None)
    return {
        "model": model_name, "preset": preset, "overrides": dict(overrides or {}), "target": target,
        "reached": hit is not None, "seconds": hit["elapsed_s"] if hit else None, "epochs": hit["epoch"] if hit else None,
        "best_test_accuracy": max(h["test_accuracy"] for h in history), "history": history,
        "precision": precision, "threads": torch.get_num_threads(), "cpu": cpu_name(),
        "train_config": {k: v for k, v in vars(cfg).items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default="cnn_seed")
    p.add_argument("--preset", default="fast")
    p.add_argument("--target", type=float, default=0.92, help="test accuracy to reach (default 0.92)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    p.add_argument("--data-dir", type=Path, help="directory with the Fashion-MNIST IDX files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    data = load_fashion_mnist(args.data_dir, log=lambda s: print(s, file=sys.stderr))
    result = time_to_accuracy(data, args.model, args.preset, args.target, parse_set_args(args.set), args.device)
    if result["reached"]:
        print(f"{args.model} ({args.preset}): test accuracy {args.target:.1%} reached after {result['epochs']} epochs "
              f"in {result['seconds']:.1f} s wall ({result['threads']} threads, {result['precision']})")
    else:
        print(f"{args.model} ({args.preset}): {args.target:.1%} not reached; best test accuracy "
              f"{result['best_test_accuracy']:.4f} in {len(result['history'])} epochs")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
