"""The public Python API: what a notebook needs, re-exported as `fmbench.<name>` (docs/api.md).

    fmbench.list_models()                          registered model names
    fmbench.create_model(name, pretrained=False, **config)   an nn.Module: float (N, 1, 28, 28) in [0, 1] -> logits
    fmbench.load_data(data_dir=None, ...)          the data set (uint8 tensors, class names), found and verified
    fmbench.train(name, preset=None, out=None, data=None, **overrides)   -> Run
    fmbench.load_run(path)                         -> Run of a finished run directory
    fmbench.evaluate(model_or_run, data=None, split="test")   -> metrics dict
    fmbench.predict(model_or_run, images)          -> one dict per image: class, probability, top 3
    fmbench.compare(runs, out)                     -> path of the report.html

Errors are the typed exceptions the CLI turns into exit 2 (`fmbench.errors`: ConfigError for a bad
name or setting, DataError for missing or corrupt data, RunDirError for a bad run directory);
never SystemExit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from fmbench import rundir as R
from fmbench.errors import ConfigError


def _quiet(msg: str) -> None:
    print(msg, file=sys.stderr)


def list_models() -> list[str]:
    """Names of the registered models, e.g. ['cnn_seed', 'vit_seed', 'cnn_best', 'vit_best']."""
    from fmbench.models import REGISTRY

    return list(REGISTRY)


def create_model(name: str, pretrained: bool = False, **config: Any) -> nn.Module:
    """A registered model. `pretrained=True`: the shipped weights, SHA-256-checked, in eval mode;
    otherwise fresh weights, with `config` overriding the model's default sizes (e.g. depth=4)."""
    from fmbench.models import build_model, get_spec

    spec = get_spec(name)
    if pretrained:
        if config:
            raise ConfigError(f"create_model({name!r}, pretrained=True) takes no config overrides "
                              f"(the shipped weights fix them): {', '.join(config)}")
        from fmbench.weights import load_shipped

        return load_shipped(name, "cpu")[0]
    from fmbench.config import apply_overrides

    return build_model(name, apply_overrides(spec.config_cls(), config))


def load_data(data_dir: str | Path | None = None, *, download: bool = True, verify: bool = True, quiet: bool = True):
    """Fashion-MNIST (or an IDX directory): `.train_images` (60000, 28, 28) uint8, `.train_labels`,
    `.test_images`, `.test_labels`, `.classes`; found and verified as the CLI does."""
    from fmbench.data import load_fashion_mnist

    return load_fashion_mnist(data_dir, download=download, verify=verify, log=(lambda s: None) if quiet else print)


@dataclass(frozen=True)
class Run:
    """A finished run directory: its config, per-epoch history, evaluation and summary."""

    path: Path
    config: Any                      # training.RunConfig
    history: list[dict[str, Any]]    # metrics.jsonl: one record per epoch
    evaluation: dict[str, Any]       # eval.json's splits: {"train"|"val"|"test": metrics}
    summary: dict[str, Any]          # summary.json

    @property
    def test_accuracy(self) -> float:
        return float(self.summary["test_accuracy"])

    def model(self, which: str = "best") -> nn.Module:
        """The run's model with its best (or last) weights, in eval mode."""
        from fmbench.training import load_model

        return load_model(self.path, "cpu", which)[0]

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, model={self.config.model!r}, preset={self.config.preset!r}, "
                f"epochs={len(self.history)}, test_accuracy={self.test_accuracy:.4f})")


def load_run(path: str | Path) -> Run:
    """A finished run directory as a `Run` (RunDirError when it is unfinished or broken)."""
    from fmbench.training import read_config

    path = Path(path)
    summary = R.read_summary(path)
    return Run(path, read_config(path), R.read_epochs(path), R.read_eval(path)["splits"], summary)


def train(name: str, preset: str | None = None, out: str | Path | None = None, data=None, device: str = "auto",
          quiet: bool = False, explain: bool = True, **overrides: Any) -> Run:
    """Train a registered model (its default preset unless named; `overrides` as `--set`, e.g.
    epochs=3) into `out` (default: runs/NAME-PRESET-seedS-HASH), on `data` (default: load_data()).
    `explain=False` skips recording where the model looks (faster for quick experiments)."""
    from fmbench import training

    rc = training.make_config(name, preset, {k: str(v) if not isinstance(v, str) else v for k, v in overrides.items()})
    data = data if data is not None else load_data()
    rc = rc.on(data)
    run_dir = Path(out) if out is not None else training.default_run_dir(rc)
    log = (lambda s: None) if quiet else _quiet
    if training.is_complete(run_dir):
        log(f"reusing the finished run {run_dir}")
    else:
        training.train(rc, run_dir, data, device, resume=(run_dir / R.CONFIG).exists(), log=log, explain=explain)
    return load_run(run_dir)


def _model_of(model_or_run: nn.Module | Run | str | Path) -> nn.Module:
    if isinstance(model_or_run, nn.Module):
        return model_or_run.eval()
    if isinstance(model_or_run, Run):
        return model_or_run.model()
    return load_run(model_or_run).model()


def _as_uint8(images: Any) -> torch.Tensor:
    """Paths, a uint8 (N, 28, 28) tensor/array or a float (N, 1, 28, 28) tensor in [0, 1] -> uint8 (N, 28, 28)."""
    if isinstance(images, (str, Path)) or (isinstance(images, Sequence) and images and isinstance(images[0], (str, Path))):
        from fmbench.imagefiles import load_images

        return load_images([images] if isinstance(images, (str, Path)) else list(images))
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8 and x.ndim == 3 and x.shape[1:] == (28, 28):
        return x
    if x.is_floating_point() and x.ndim == 4 and x.shape[1:] == (1, 28, 28):
        return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8)
    raise ConfigError(f"images must be file paths, uint8 (N, 28, 28) or float (N, 1, 28, 28) in [0, 1]; "
                      f"got {x.dtype} {tuple(x.shape)}")


def evaluate(model_or_run: nn.Module | Run | str | Path, data=None, split: str = "test") -> dict[str, Any]:
    """Loss, accuracy, weighted F1, per-class report and confusion matrix on the test set (or
    split="train"/"val" of a Run, using its own validation split)."""
    from fmbench.config import TrainConfig
    from fmbench.data.batches import make_splits
    from fmbench.engine.loop import evaluate as run_eval

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    data = data if data is not None else load_data()
    cfg = model_or_run.config.train_cfg if isinstance(model_or_run, Run) else TrainConfig()
    if split != "test" and not isinstance(model_or_run, Run):
        raise ConfigError("split='train' or 'val' needs a Run (its validation split); a bare model gets split='test'")
    splits = make_splits(data, cfg, torch.device("cpu"))
    x, y = splits.of(split)
    metrics, _ = run_eval(_model_of(model_or_run), x, y, cfg, "fp32")
    for row, cls in zip(metrics["per_class"], data.classes):
        row["class"] = cls
    return metrics


def predict(model_or_run: nn.Module | Run | str | Path, images: Any, top: int = 3) -> list[dict[str, Any]]:
    """One dict per image: {"class", "probability", "top": [(class, probability), ...]}."""
    from fmbench import CLASSES
    from fmbench.engine.loop import predict_logits

    x = _as_uint8(images)
    probs = predict_logits(_model_of(model_or_run), x, 256, "fp32").softmax(1)
    out = []
    for p in probs:
        values, idx = p.topk(top)
        out.append({"class": CLASSES[int(idx[0])], "probability": float(values[0]),
                    "top": [(CLASSES[int(i)], float(v)) for v, i in zip(values, idx)]})
    return out


def compare(runs: Sequence[Run | str | Path], out: str | Path = "report", test_images: Any = None) -> Path:
    """The comparison report (report.md, report.html, figures/) of finished runs; returns report.html."""
    from fmbench.report import build_report

    dirs = [r.path if isinstance(r, Run) else Path(r) for r in runs]
    return build_report(dirs, Path(out), test_images=test_images)


__all__ = ["list_models", "create_model", "load_data", "Run", "train", "load_run", "evaluate", "predict", "compare"]
