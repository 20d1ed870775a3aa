"""Runs: create a run directory, train a registered model in it, resume it, and load it back.

The run directory layout is described in docs/design.md. This module ties together the
config, the data splits, the model registry and the engine; the CLI only calls it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from fmbench import __version__
from fmbench.config import TrainConfig, apply_overrides, config_hash, to_dict
from fmbench.data.batches import make_splits
from fmbench.engine import distributed as D
from fmbench.engine.checkpoint import load_weights, save_weights
from fmbench.engine.loop import evaluate, fit
from fmbench.engine.speed import measure_inference
from fmbench import rundir as R
from fmbench.errors import RunDirError
from fmbench.fileio import writer_lock
from fmbench.models import build_model, count_flops, count_params, get_spec, resolve_config, resolve_preset
from fmbench.runtime import capture_env, choose_device, choose_precision, seed_everything, set_threads

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run, as stored in RUN_DIR/config.json."""

    model: str
    preset: str
    overrides: dict[str, Any]
    model_cfg: Any
    train_cfg: TrainConfig
    data: dict[str, Any] | None = None     # Dataset.identity of the data it trains on (None: not yet known)

    @property
    def hash(self) -> str:
        return config_hash(self.model, self.model_cfg, self.train_cfg, self.data["key"] if self.data else None)

    def on(self, data) -> "RunConfig":
        """This config bound to a loaded data set (its identity enters the hash and config.json)."""
        return replace(self, data=data.identity)

    def to_json(self) -> dict[str, Any]:
        """config.json's content (rundir.config_record)."""
        return R.config_record(fmbench_version=__version__, model=self.model, preset=self.preset,
                               overrides=self.overrides, model_config=to_dict(self.model_cfg),
                               train_config=to_dict(self.train_cfg), config_hash=self.hash, data=self.data)


def make_config(model: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The run's config; `preset` None means the model's default preset."""
    preset = resolve_preset(model, preset)
    model_cfg, train_cfg = resolve_config(model, preset, overrides)
    return RunConfig(model, preset, dict(overrides or {}), model_cfg, train_cfg)


def read_config(run_dir: Path) -> RunConfig:
    """The run's config.json, validated against this version's config classes."""
    raw = R.read_config(run_dir)
    return run_config_from(raw.get("model"), raw, Path(run_dir) / R.CONFIG)


def run_config_from(model: str | None, cfg: dict[str, Any], where: Path | str) -> RunConfig:
    """A RunConfig from its JSON form (config.json or a weights card), validated against this version."""
    try:
        spec = get_spec(model)
        # A field added after a run was written takes the value that run was trained with.
        legacy = getattr(spec.config_cls, "LEGACY_DEFAULTS", {})
        model_cfg = apply_overrides(spec.config_cls(), {**legacy, **cfg["model_config"]})
        train_cfg = apply_overrides(TrainConfig(), cfg["train_config"])
        return RunConfig(model, cfg.get("preset", "?"), cfg.get("overrides", {}), model_cfg, train_cfg,
                         cfg.get("data"))
    except (KeyError, TypeError) as e:
        raise RunDirError(f"{where}: missing or invalid field {e}") from None


def default_run_dir(rc: RunConfig, root: Path = Path("runs")) -> Path:
    return root / f"{rc.model}-{rc.preset}-seed{rc.train_cfg.seed}-{rc.hash[:8]}"


is_complete = R.is_complete


def train(rc: RunConfig, run_dir: Path, data, device_name: str = "auto", resume: bool = False,
          log: Log = _stderr, explain: bool = True) -> Path:
    """Train `rc` in `run_dir` on the loaded data set, evaluate it and write the run directory.

    The main process holds the directory's writer lock throughout: a second `fmbench train` into
    the same directory fails at once instead of mixing two runs' files. `explain` False skips the
    saliency maps and their faithfulness checks (the data-size study trains dozens of runs)."""
    run_dir = Path(run_dir)
    check_same_data(read_config(run_dir) if resume else rc, data, run_dir)   # resume: what the run recorded
    rc = rc if rc.data is not None else rc.on(data)
    device_name = D.setup(device_name)         # join torchrun's group first: only rank 0 writes
    if not D.is_main():
        return _train(rc, run_dir, data, device_name, resume, log, explain)
    with writer_lock(run_dir):
        return _train(rc, run_dir, data, device_name, resume, log, explain)


def _train(rc: RunConfig, run_dir: Path, data, device_name: str, resume: bool, log: Log, explain: bool) -> Path:
    cfg = rc.train_cfg
    set_threads(cfg.threads)
    device = choose_device(D.setup(device_name))
    precision = choose_precision(cfg.precision, device)
    splits = make_splits(data, cfg, device)  # a bad split fails before anything is written
    if D.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            R.write_config(run_dir, rc.to_json())
        R.write_env(run_dir, capture_env(device, precision, D.world_size(), cfg.batch_size))
    seed_everything(cfg.seed)
    model = build_model(rc.model, rc.model_cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    log(f"training {rc.model} ({rc.preset}) on {device} in {precision}: {len(splits.train_y)} train, "
        f"{len(splits.val_y)} val images; run directory {run_dir}")
    result = fit(model, splits, cfg, run_dir, precision, resume=resume, log=log)
    if D.is_main():
        finish(rc, run_dir, model, splits, device, precision, data.test_hash, result, log, explain=explain)
    D.barrier()
    return run_dir


def finish(rc: RunConfig, run_dir: Path, model: nn.Module, splits, device: torch.device, precision: str,
           test_hash: str, result: dict[str, Any], log: Log = _stderr, pretrained: bool = False,
           explain: bool = True) -> None:
    """Clean evaluation on train/val/test, cost figures, and summary.json (written last)."""
    cfg = rc.train_cfg
    splits_eval = write_evaluation(run_dir, model, cfg, precision, splits, ("train", "val", "test"),
                                   result.get("best_epoch"), log, (rc.data or {}).get("classes"))
    if explain:
        record_explanation(run_dir, model, rc, splits.test_x, splits.test_y, precision, log)
    ips = [r["images_per_s"] for r in R.read_epochs(run_dir)]
    R.write_summary(run_dir, summarize(rc, model, device, precision, test_hash, splits_eval["test"], **result,
                                       train_images_per_s=round(sum(ips) / len(ips), 1) if ips else None,
                                       pretrained=pretrained))


def summarize(rc: RunConfig, model: nn.Module, device: torch.device, precision: str, test_hash: str,
              test: dict[str, Any], **fields: Any) -> R.Summary:
    """The run's summary.json: the model's size and inference speed measured here, the test
    metrics given, and the training figures in `fields` (rundir.Summary's other fields)."""
    speed = measure_inference(model, device, precision, channels_last=rc.train_cfg.channels_last)
    return R.Summary(model=rc.model, preset=rc.preset, config_hash=rc.hash, params=count_params(model),
                     flops_per_image=count_flops(model), **speed, device=str(device), precision=precision,
                     test_hash=test_hash, test_accuracy=test["accuracy"], test_f1_weighted=test["f1_weighted"],
                     **fields)


def write_evaluation(run_dir: Path, model: nn.Module, cfg: TrainConfig, precision: str, splits,
                     names: tuple[str, ...], best_epoch: int | None, log: Log = _stderr,
                     classes: tuple[str, ...] | list[str] | None = None) -> dict[str, dict]:
    """Evaluate `model` cleanly on the named splits (test last); write eval.json and test_outputs.
    `classes` names the per-class rows (the data set's class names; default Fashion-MNIST's)."""
    metrics, probs = {}, None
    for name in names:
        metrics[name], p = evaluate(model, *splits.of(name), cfg, precision)
        for row, cls in zip(metrics[name]["per_class"], classes or ()):
            row["class"] = cls
        if name == "test":
            probs = p
        log(f"{name:>5}: loss {metrics[name]['loss']:.4f}  accuracy {metrics[name]['accuracy']:.4f}  "
            f"weighted F1 {metrics[name]['f1_weighted']:.4f}")
    R.write_eval(run_dir, best_epoch, metrics)
    R.write_outputs(run_dir, probs, splits.test_y)
    return metrics


def record_explanation(run_dir: Path, model: nn.Module, rc: RunConfig, test_x: torch.Tensor, test_y: torch.Tensor,
                       precision: str, log: Log = _stderr) -> None:
    """Where the model looks, and how faithfully: explain.json + explain.safetensors (explain/record.py)."""
    from fmbench.explain.record import record_explanations

    record_explanations(run_dir, model, rc.model, rc.model_cfg, get_spec(rc.model).family, test_x, test_y,
                        precision, log)


def explain_existing(run_dir: Path, data, device_name: str = "auto", log: Log = _stderr) -> None:
    """Add the explanation to a complete trained run written before fmbench recorded one."""
    run_dir = Path(run_dir)
    if not R.is_complete(run_dir):
        raise RunDirError(f"{run_dir}: not a complete run (finish or resume it first)")
    model, rc = load_model(run_dir, choose_device(device_name))
    check_same_data(rc, data, run_dir)
    with writer_lock(run_dir):
        record_explanation(run_dir, model, rc, data.test_images, data.test_labels,
                           choose_precision(rc.train_cfg.precision, next(model.parameters()).device), log)


def check_same_data(rc: RunConfig, data, where: Path) -> None:
    """A run bound to one data set is never continued or reused on another: one line naming both."""
    if rc.data is not None and rc.data.get("key") != data.identity["key"]:
        raise RunDirError(f"{where}: this run was trained on data set {rc.data.get('name')} "
                          f"(key {rc.data.get('key')}), but the data given is {data.identity['name']} "
                          f"(key {data.identity['key']}, {data.source}); use the same data or another --out")


def resume(run_dir: Path, data, device_name: str = "auto", log: Log = _stderr) -> Path:
    """Continue an interrupted run from its `last` checkpoint (model and config from the run dir)."""
    rc = read_config(run_dir)
    if is_complete(run_dir):
        log(f"{run_dir} is already complete; nothing to resume")
        return Path(run_dir)
    return train(rc, run_dir, data, device_name, resume=True, log=log)


def weights_file(run_dir: Path, rc: RunConfig) -> Path:
    """The file holding the run's model: its best epoch's weights, or its last epoch's when the
    recipe keeps the last (`restore_best=False`, Keras' EarlyStopping default)."""
    return Path(run_dir) / (R.BEST if rc.train_cfg.restore_best else R.LAST)


def load_model(run_dir: Path, device: torch.device | str = "cpu", which: str | None = None) -> tuple[nn.Module, RunConfig]:
    """The run's model (`which` None: the weights its recipe keeps; "best" or "last"), in eval mode."""
    rc = read_config(run_dir)
    model = build_model(rc.model, rc.model_cfg).to(device)
    path = weights_file(run_dir, rc) if which is None else Path(run_dir) / {"best": R.BEST, "last": R.LAST}[which]
    load_weights(model, path)
    return model.eval(), rc


__all__ = ["RunConfig", "make_config", "read_config", "train", "resume", "load_model", "finish",
           "default_run_dir", "is_complete", "save_weights", "weights_file"]
