"""The life of a run: spec -> plan -> reuse / resume / train, or evaluate shipped weights -> finish.

Every command that makes a run goes through `execute` (a run trained here) or `evaluate_shipped`
(shipped weights evaluated into a run directory): `fmbench train`, `fmbench run`, the studies and
the Python API. This module is the only writer of a complete run directory (`_finish` writes its
summary.json, last) and the only place a run directory's name is made (`run_dir_for`,
`shipped_run_dir`). Each writer holds the directory's lock, so a second writer fails at once.
The files themselves are rundir's; docs/design.md describes them.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from fmbench import rundir as R
from fmbench.data.batches import make_splits
from fmbench.engine import distributed as D
from fmbench.engine.checkpoint import load_weights
from fmbench.engine.loop import evaluate_splits, fit
from fmbench.engine.speed import measure_inference
from fmbench.engine.tensorboard import EpochEvents
from fmbench.errors import ConfigError, RunDirError
from fmbench.explain.record import explain_run, record_explanations
from fmbench.fileio import writer_lock
from fmbench.models import build_model, count_flops, count_params
from fmbench.runtime import capture_env, choose_device, choose_precision, seed_everything, set_threads
from fmbench.config import RUNTIME_KEYS
from fmbench.spec import RunSpec, read_spec

logger = logging.getLogger(__name__)


# names ------------------------------------------------------------------------------------------

def run_dir_for(spec: RunSpec, root: Path = Path("runs")) -> Path:
    """ROOT/MODEL-PRESET[-nSIZE]-seedS-HASH8: a run's directory, named by its identity."""
    size = f"-n{spec.train_cfg.train_size}" if spec.train_cfg.train_size else ""
    return Path(root) / f"{spec.model}-{spec.preset}{size}-seed{spec.train_cfg.seed}-{spec.hash[:8]}"


def shipped_run_dir(name: str, root: Path) -> Path:
    """ROOT/NAME-pretrained: where shipped weights NAME are evaluated."""
    return Path(root) / f"{name}-pretrained"


# plan -------------------------------------------------------------------------------------------

def plan(spec: RunSpec, run_dir: Path) -> str:
    """What `execute` will do in `run_dir`: "reuse" a finished run of this spec, "resume" an
    interrupted (or cut-short) one, or "train" a new one. A directory holding another run is a
    ConfigError; one holding a run on other data a RunDirError."""
    run_dir = Path(run_dir)
    if not (run_dir / R.CONFIG).exists():
        return "train"
    held = read_spec(run_dir)
    check_same_data(held, spec.data or {}, run_dir)
    if held.hash != spec.hash:
        where = f" on {held.device}, this one on {spec.device}" if held.device != spec.device else ""
        raise ConfigError(f"{run_dir} holds another run (model {held.model}, preset {held.preset}, config "
                          f"{held.hash}{where}; this one is {spec.hash}); choose another directory")
    if R.is_complete(run_dir) and not R.read_summary(run_dir).get("cut_short"):
        return "reuse"
    return "resume"


def execute(spec: RunSpec, run_dir: Path, data, device: str = "auto", explain: bool = True, head: str = "",
            test: bool = True, on_epoch: Callable[[int, dict[str, Any]], bool] | None = None) -> Path:
    """Reuse, resume or train the run `spec` (bound to `data` here if it is not) in `run_dir`.
    `explain` False skips the saliency maps and their checks (studies train dozens of runs).
    `test` False finishes the run without touching the test set (a search's trials choose on the
    validation split alone); a later `execute` with `test` True evaluates it then. `on_epoch` is
    `engine.loop.fit`'s: called with each epoch's record, True stops training there; such a run is
    marked cut short and a later `execute` continues it instead of reusing it (a pruned trial)."""
    run_dir = Path(run_dir)
    device = D.setup(device)                   # join torchrun's group first: only rank 0 writes
    spec = spec if spec.data is not None else spec.on(data, device)
    step = plan(spec, run_dir)
    head = f"{head}: " if head else ""
    if step == "reuse":
        logger.info("%sreusing the finished run %s", head, run_dir)
        if D.is_main() and test and R.read_summary(run_dir).get("test_accuracy") is None:   # chosen: its test
            _evaluate_test(read_spec(run_dir), run_dir, data, device, explain)
        elif D.is_main() and explain and test and not (run_dir / R.EXPLAIN).exists():   # from before explanations
            explain_existing(run_dir, data, device)
        D.barrier()
        return run_dir
    logger.info("%s%s %s", head, "resuming the interrupted run" if step == "resume" else "training in", run_dir)
    if step == "resume":                       # as recorded, with the runtime settings asked for now
        held = read_spec(run_dir)
        spec = replace(held, train_cfg=replace(held.train_cfg, **{k: getattr(spec.train_cfg, k) for k in RUNTIME_KEYS}))
    return _train(spec, run_dir, data, device, step == "resume", explain, test, on_epoch)


def resume(run_dir: Path, data, device: str = "auto") -> Path:
    """Continue an interrupted run from its `last` checkpoint, with the spec it recorded, on the kind
    of device it recorded ("auto" picks that one; another kind is a ConfigError)."""
    spec = read_spec(run_dir)
    if R.is_complete(run_dir) and not R.read_summary(run_dir).get("cut_short"):
        logger.info("%s is already complete; nothing to resume", run_dir)
        return Path(run_dir)
    check_same_data(spec, data, Path(run_dir))
    device = spec.device if device == "auto" and spec.device else device
    if spec.device and choose_device(D.setup(device)).type != spec.device:
        raise ConfigError(f"{run_dir}: this run was trained on {spec.device}; resume it there "
                          f"(--device {spec.device}), not on {choose_device(device).type}")
    return _train(spec, Path(run_dir), data, device, resume=True, explain=True, test=True)


def check_same_data(spec: RunSpec, data, where: Path) -> None:
    """A run bound to one data set is never continued or reused on another: one line naming both.
    `data` is a loaded data set or its identity (Dataset.identity)."""
    identity = data if isinstance(data, dict) else data.identity
    source = getattr(data, "source", "the data given")
    if spec.data is not None and identity and spec.data.get("key") != identity.get("key"):
        raise RunDirError(f"{where}: this run was trained on data set {spec.data.get('name')} "
                          f"(key {spec.data.get('key')}), but the data given is {identity.get('name')} "
                          f"(key {identity.get('key')}, {source}); use the same data or another --out")


# train ------------------------------------------------------------------------------------------

def _train(spec: RunSpec, run_dir: Path, data, device_name: str, resume: bool, explain: bool, test: bool,
           on_epoch=None) -> Path:
    """Train `spec` in `run_dir` and finish it. The main process holds the writer lock throughout;
    torchrun's other ranks train beside it and write nothing."""
    device_name = D.setup(device_name)
    with writer_lock(run_dir) if D.is_main() else nullcontext():
        return _train_locked(spec, run_dir, data, device_name, resume, explain, test, on_epoch)


def _train_locked(spec: RunSpec, run_dir: Path, data, device_name: str, resume: bool, explain: bool, test: bool,
                  on_epoch) -> Path:
    if spec.data is not None and spec.data.get("key") == data.identity["key"]:
        spec = replace(spec, data=data.identity)   # a run recorded before the identity named its test set
    cfg = spec.train_cfg
    set_threads(cfg.threads)
    device = choose_device(device_name)
    precision = choose_precision(cfg.precision, device)
    splits = make_splits(data, cfg, device)  # a bad split fails before anything is written
    if D.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        R.mark_unfinished(run_dir)             # a cut-short run continued is complete again only once finished
        R.write_config(run_dir, spec.to_json())   # on resume: as recorded, in this version's format
        R.write_env(run_dir, capture_env(device, precision, D.world_size(), cfg.batch_size))
    seed_everything(cfg.seed)
    model = _runtime_layout(build_model(spec.model, spec.model_cfg).to(device), spec)
    logger.info("training %s (%s) on %s in %s: %d train, %d val images; run directory %s", spec.model,
                spec.preset, device, precision, len(splits.train_y), len(splits.val_y), run_dir)
    result = fit(model, splits, cfg, run_dir, precision, resume=resume, on_epoch=on_epoch)
    if D.is_main():
        ips = [r["images_per_s"] for r in R.read_epochs(run_dir)]
        _finish(spec, run_dir, model, splits, device, precision, data, ("train", "val", "test")[:3 if test else 2],
                explain and test, **result,
                train_images_per_s=round(sum(ips) / len(ips), 1) if ips else None)
    D.barrier()
    return run_dir


def _evaluate_test(spec: RunSpec, run_dir: Path, data, device: str, explain: bool) -> None:
    """Finish again, with the test set, a run finished without it: the same weights and figures."""
    kept = ("train_time_s", "epochs_run", "best_epoch", "stopped_early", "train_images_per_s", "monitor", "best_value")
    summary = R.read_summary(run_dir)
    dev = choose_device(device)
    model, _ = load_model(run_dir, dev)
    precision = choose_precision(spec.train_cfg.precision, dev)
    logger.info("evaluating %s on the test set", run_dir)
    with writer_lock(run_dir):
        R.mark_unfinished(run_dir)
        _finish(spec, run_dir, _runtime_layout(model, spec), make_splits(data, spec.train_cfg, dev), dev, precision,
                data, ("train", "val", "test"), explain, **{k: summary.get(k) for k in kept})


# shipped weights --------------------------------------------------------------------------------

def evaluate_shipped(name: str | Path, run_dir: Path, data, device: str = "auto", head: str = "") -> Path:
    """Evaluate shipped weights (a name or a .safetensors with its card) into `run_dir`, or reuse
    the evaluation there when it is of the same weights on the same data set."""
    from fmbench.weights import load_shipped, read_card

    run_dir, card = Path(run_dir), read_card(name)
    device = D.setup(device)
    head = f"{head}: " if head else ""
    if R.is_complete(run_dir):
        summary, held = R.read_summary(run_dir), read_spec(run_dir)
        if (summary.get("weights_sha256") == card["sha256"] and (held.data or {}).get("key") == data.identity["key"]
                and (run_dir / R.EXPLAIN).exists()):
            logger.info("%sreusing the evaluation in %s", head, run_dir)
            return run_dir
    logger.info("%sevaluating in %s", head, run_dir)
    if D.is_main():
        dev = choose_device(device)
        model, spec = load_shipped(name, dev)
        spec = spec.on(data, device)
        precision = choose_precision(spec.train_cfg.precision, dev)
        with writer_lock(run_dir):
            R.mark_unfinished(run_dir)
            R.write_config(run_dir, spec.to_json())
            R.write_env(run_dir, {**capture_env(dev, precision, 1, spec.train_cfg.batch_size),
                                  "weights": str(name), "weights_sha256": card["sha256"]})
            R.write_epochs(run_dir, card.get("curve") or [])
            with EpochEvents(run_dir) as events:   # the card's curve, in TensorBoard beside trained runs
                for record in card.get("curve") or []:
                    events.write(record)
            logger.info("evaluating shipped %s (%s) on %s in %s", spec.model, card["sha256"][:12], dev, precision)
            _finish(spec, run_dir, _runtime_layout(model, spec), make_splits(data, spec.train_cfg, dev), dev,
                    precision, data, ("val", "test"), True, train_time_s=card.get("train_time_s"), epochs_run=card.get("epochs"),
                    best_epoch=card.get("best_epoch"), stopped_early=False, train_images_per_s=None,
                    pretrained=True, weights_sha256=card["sha256"], card_test_accuracy=card["test"]["accuracy"])
    D.barrier()
    return run_dir


# finish -----------------------------------------------------------------------------------------

def _finish(spec: RunSpec, run_dir: Path, model: nn.Module, splits, device: torch.device, precision: str, data,
            names: tuple[str, ...], explain: bool, **fields: Any) -> None:
    """Measure the model (clean evaluation on the named splits, the explanation, inference speed),
    then write it all, summary.json last (its presence marks the run complete)."""
    explanation = explain_run(model, spec.model, spec.model_cfg, spec.family, splits.test_x, splits.test_y,
                              precision) if explain else None
    metrics, probs = evaluate_splits(model, splits, names, spec.train_cfg, precision, data.classes)
    test = metrics.get("test", {})
    speed = measure_inference(model, device, precision, channels_last=spec.train_cfg.channels_last)
    summary = R.Summary(
        model=spec.model, preset=spec.preset, config_hash=spec.hash, params=count_params(model),
        flops_per_image=count_flops(model), **speed, device=str(device), precision=precision,
        test_hash=data.test_hash, test_accuracy=test.get("accuracy"), test_f1_weighted=test.get("f1_weighted"),
        **fields)
    R.write_eval(run_dir, fields.get("best_epoch"), metrics)
    if probs is not None:
        R.write_outputs(run_dir, probs, splits.test_y)
    if explanation is not None:
        R.write_explanation(run_dir, *explanation)
    R.write_summary(run_dir, summary)


def explain_existing(run_dir: Path, data, device: str = "auto") -> None:
    """Add the explanation to a complete trained run written before fmbench recorded one."""
    run_dir = Path(run_dir)
    if not R.is_complete(run_dir):
        raise RunDirError(f"{run_dir}: not a complete run (finish or resume it first)")
    model, spec = load_model(run_dir, choose_device(device))
    check_same_data(spec, data, run_dir)
    with writer_lock(run_dir):
        record_explanations(run_dir, model, spec.model, spec.model_cfg, spec.family, data.test_images,
                            data.test_labels, choose_precision(spec.train_cfg.precision, next(model.parameters()).device))


# the run's model --------------------------------------------------------------------------------

def weights_file(run_dir: Path, spec: RunSpec) -> Path:
    """The file holding the run's model: its best epoch's weights, or its last epoch's when the
    recipe keeps the last (`restore_best=False`, Keras' EarlyStopping default)."""
    return Path(run_dir) / (R.BEST if spec.train_cfg.restore_best else R.LAST)


def load_model(run_dir: Path, device: torch.device | str = "cpu", which: str | None = None) -> tuple[nn.Module, RunSpec]:
    """The run's model (`which` None: the weights its recipe keeps; "best" or "last"), in eval mode."""
    spec = read_spec(run_dir)
    model = build_model(spec.model, spec.model_cfg).to(device)
    path = weights_file(run_dir, spec) if which is None else Path(run_dir) / {"best": R.BEST, "last": R.LAST}[which]
    load_weights(model, path)
    return model.eval(), spec


def load_models(run_dirs: list[Path], names: list[str], device):
    """The models a command names, in its order: run directories (the weights each recipe keeps),
    then shipped weights by name or path. Yields (source, model, spec), source being the run
    directory (a Path) or the shipped name (a str); serve and the robustness study label them."""
    from fmbench.weights import load_shipped

    for d in run_dirs:
        yield (Path(d), *load_model(Path(d), device))
    for n in names:
        yield (n, *load_shipped(n, device))


def _runtime_layout(model: nn.Module, spec: RunSpec) -> nn.Module:
    """The model in the memory layout its run uses (channels_last for the CNNs where set)."""
    return model.to(memory_format=torch.channels_last) if spec.train_cfg.channels_last else model
