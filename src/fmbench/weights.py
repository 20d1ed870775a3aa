"""Shipped weights: trained `cnn_seed`, `vit_seed`, `cnn_best` and `vit_best` in the package, each with a JSON card.

    src/fmbench/weights/NAME.safetensors   the model's state dict (fp16 storage, loaded as fp32)
    src/fmbench/weights/NAME.json          the card: model, configs, training command, seed,
                                           epochs, wall time, machine, test metrics, the weights
                                           file's SHA-256, the test set's hash, the epoch curve

`load_shipped` verifies the file against the card's SHA-256 before it loads anything.
`runs.evaluate_shipped` evaluates them into a run directory (marked "pretrained") that the usual
comparison report reads. `ship_run` writes a NAME.safetensors + card from a finished run.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file

from fmbench import rundir as R
from fmbench.data.batches import make_splits
from fmbench.engine.checkpoint import load_weights, save_tensors
from fmbench.engine.loop import evaluate
from fmbench.errors import RunDirError
from fmbench.fileio import write_json
from fmbench.models import build_model
from fmbench.runtime import choose_precision
from fmbench.spec import RunSpec, read_spec, spec_from

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
logger = logging.getLogger(__name__)


def available() -> list[str]:
    """Names of the weights shipped in the package (a .safetensors with its .json card)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors") if p.with_suffix(".json").is_file())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve(name_or_path: str | Path) -> tuple[Path, Path]:
    """(weights file, card) for a shipped name or a path to a .safetensors with NAME.json beside it."""
    text = str(name_or_path)
    if text in available():
        path = WEIGHTS_DIR / f"{text}.safetensors"
    else:
        path = Path(text)
        if path.suffix != ".safetensors" or not path.is_file():
            raise RunDirError(f"{text!r} is neither shipped weights ({', '.join(available()) or 'none'}) "
                              f"nor an existing .safetensors file")
    card = path.with_suffix(".json")
    if not card.is_file():
        raise RunDirError(f"{path}: its card {card.name} is missing (a .safetensors needs its .json beside it)")
    return path, card


def read_card(name_or_path: str | Path) -> dict[str, Any]:
    """The JSON card of shipped weights (its fields checked; `load_shipped` verifies the file)."""
    return R.read_card(resolve(name_or_path)[1])


def card_spec(card: dict[str, Any], where: Path | str = "card") -> RunSpec:
    """The RunSpec stored in a card, validated against this version's config classes."""
    return spec_from(card.get("model"), card["config"], where)


def load_shipped(name_or_path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, RunSpec]:
    """(model in eval mode, its RunSpec) from shipped weights; refuses a file whose SHA-256 is wrong."""
    path, card_path = resolve(name_or_path)
    card = R.read_card(card_path)
    expected = card["sha256"]
    actual = sha256_file(path)
    if actual != expected:
        raise RunDirError(f"{path}: SHA-256 mismatch: the card {card_path.name} expects {expected}, "
                          f"the file has {actual}; refusing to load modified or corrupt weights")
    rc = card_spec(card, card_path)
    model = build_model(rc.model, rc.model_cfg).to(device)
    load_weights(model, path)
    return model.eval(), rc


def ship_run(run_dir: Path, name: str, data, out_dir: Path = WEIGHTS_DIR, dtype: torch.dtype = torch.float16,
             command: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write OUT/NAME.safetensors (the run's model, stored as `dtype`) and its card from a finished run.

    The card's test metrics are those of the stored (rounded) weights, evaluated here on `data`.
    `command` replaces env.json's (which a resumed run overwrites with `fmbench train --resume`);
    `extra` adds fields to the card (wall time, notes).
    """
    from fmbench.runs import load_model, weights_file

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not R.is_complete(run_dir):
        raise RunDirError(f"{run_dir}: not a complete run")
    rc, summary, env = read_spec(run_dir), R.read_summary(run_dir), R.read_env(run_dir)
    if summary["test_hash"] != data.test_hash:
        raise RunDirError(f"{run_dir}: evaluated on a different test set than the one given")
    state = load_file(str(weights_file(run_dir, rc)))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    save_tensors(weights, state, metadata={"model": rc.model, "format": "fmbench-weights-1"})
    run_test = R.read_eval(run_dir)["splits"]["test"]
    card = R.card_record(**{**dict(
        name=name, model=rc.model, sha256=sha256_file(weights), dtype=str(dtype).removeprefix("torch."),
        bytes=weights.stat().st_size, config={k: v for k, v in rc.to_json().items() if k != "format_version"},
        command=command or env.get("command"), seed=rc.train_cfg.seed, epochs=summary["epochs_run"],
        best_epoch=summary["best_epoch"], train_time_s=summary["train_time_s"], params=summary["params"],
        flops_per_image=summary["flops_per_image"],
        machine={k: env.get(k) for k in ("cpu", "device", "threads", "precision", "platform", "torch",
                                         "git_commit", "started")},
        test_hash=data.test_hash, run_test={k: run_test[k] for k in ("accuracy", "f1_weighted", "loss")},
        curve=R.read_epochs(run_dir), test={}), **(extra or {})})   # extra may correct a field (train_time_s)
    write_json(weights.with_suffix(".json"), card)  # provisional ("test" empty): lets load_shipped verify
    model, _ = load_shipped(weights, "cpu")
    if rc.train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    splits = make_splits(data, rc.train_cfg, torch.device("cpu"))
    precision = choose_precision(rc.train_cfg.precision, torch.device("cpu"))
    test, _ = evaluate(model, splits.test_x, splits.test_y, rc.train_cfg, precision)
    card["test"] = {k: test[k] for k in ("accuracy", "f1_weighted", "loss", "n")}
    if not rc.train_cfg.restore_best:   # the model is the last epoch's: the best epoch's figures beside it
        best, _ = load_model(run_dir, "cpu", which="best")
        card["best_epoch_eval"] = {"epoch": summary["best_epoch"], "weights": "the run's best.safetensors (fp32)"}
        for split in ("val", "test"):
            m, _ = evaluate(best, *splits.of(split), rc.train_cfg, precision)
            card["best_epoch_eval"][split] = {k: m[k] for k in ("accuracy", "f1_weighted", "loss")}
    write_json(weights.with_suffix(".json"), card)
    logger.info("shipped %s (%.2f MB, sha256 %s): test accuracy %.4f (run: %.4f)", weights, card["bytes"] / 1e6,
                card["sha256"][:12], test["accuracy"], card["run_test"]["accuracy"])
    return card
