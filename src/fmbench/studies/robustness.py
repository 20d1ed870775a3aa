"""`fmbench study robustness`: accuracy of each model under each corruption at each severity.

Evaluation only: the models (run directories or shipped weights) predict the same test images,
clean and corrupted (fmbench.corruptions, seeded), and the results go to OUT/robustness.json,
which the study's own report and the main report (`compare` given OUT) both read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmbench import corruptions as C
from fmbench.errors import ConfigError
from fmbench.fileio import write_json

logger = logging.getLogger(__name__)

RESULT_FILE = "robustness.json"
SEED = 0


@dataclass(frozen=True)
class Subject:
    """One model to test: a display name, the module, its precision and family/tier."""

    label: str
    model: torch.nn.Module
    name: str              # registry name
    precision: str
    source: str            # "run DIR" or "shipped NAME"


def parse_severities(text: str) -> list[int]:
    """"1-5", "3" or "1,3,5" -> sorted severities; anything else is a ConfigError."""
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            values = list(range(lo, hi + 1))
        else:
            values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--severities {text!r}: give a range like 1-5 or a list like 1,3,5") from None
    if not values or any(not 1 <= v <= C.MAX_SEVERITY for v in values):
        raise ConfigError(f"--severities {text!r}: severities run from 1 to {C.MAX_SEVERITY}")
    return sorted(set(values))


def parse_corruptions(text: str | None) -> list[str]:
    if not text:
        return list(C.CORRUPTIONS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        C.check(n, 0)
    return names


def test_subset(labels: torch.Tensor, n: int | None) -> torch.Tensor:
    """Indices of a stratified, seeded choice of `n` test images (all of them when n is None or >= N)."""
    from fmbench.data.batches import stratified_subset

    all_idx = torch.arange(len(labels))
    if n is None or n >= len(labels):
        return all_idx
    if n < 10:
        raise ConfigError(f"--images {n}: use at least 10 test images (one per class)")
    return stratified_subset(all_idx, labels, n, SEED)


def _predict(s: Subject, images: torch.Tensor, device: torch.device) -> np.ndarray:
    from fmbench.engine.loop import predict_logits

    return predict_logits(s.model, images.to(device), 1000, s.precision).argmax(1).cpu().numpy()


def subjects(run_dirs: list[Path], names: list[str], device: torch.device) -> list[Subject]:
    """The models to test: run directories, then shipped weights (every shipped model when neither is
    named). A run is labelled by its model, and by its folder too when two would share a label."""
    from fmbench.runs import load_models
    from fmbench.runtime import choose_precision
    from fmbench.weights import available

    names = names if names or run_dirs else available()
    loaded = list(load_models(run_dirs, names, device))
    labels = [spec.model if isinstance(src, Path) else src for src, _, spec in loaded]
    out = []
    for (src, model, spec), label in zip(loaded, labels):
        if isinstance(src, Path) and labels.count(label) > 1:
            label = f"{label} ({src.name})"  # two runs of one model, or a run beside its shipped weights
        source = f"run {src}" if isinstance(src, Path) else f"shipped {src}"
        out.append(Subject(label, model, spec.model, choose_precision(spec.train_cfg.precision, device), source))
    return out


def run(subjects: list[Subject], test_images: torch.Tensor, test_labels: torch.Tensor, test_hash: str,
        corruptions: list[str], severities: list[int], n_images: int | None, out: Path, device: torch.device) -> dict[str, Any]:
    """Evaluate every subject on clean and corrupted images; write OUT/robustness.json and return it."""
    idx = test_subset(test_labels, n_images)
    x, y = test_images[idx].cpu(), test_labels[idx].cpu().numpy()
    t0 = time.perf_counter()
    preds: dict[str, dict[str, list[list[int]]]] = {s.label: {} for s in subjects}
    clean = {s.label: _predict(s, x, device) for s in subjects}
    for name in corruptions:
        for sev in severities:
            xc = C.corrupt(x, name, sev, SEED)
            for s in subjects:
                preds[s.label].setdefault(name, []).append(_predict(s, xc, device).tolist())
        logger.info(f"  {name}: " + ", ".join(
            f"{s.label} {np.mean([np.mean(np.array(p) == y) for p in preds[s.label][name]]):.3f}" for s in subjects))
    result = {
        "kind": "robustness", "test_hash": test_hash, "seed": SEED, "n_images": int(len(idx)),
        "test_indices": idx.tolist(), "labels": y.tolist(), "corruptions": corruptions, "severities": severities,
        "parameters": {n: [C.SEVERITIES[n][s - 1] for s in severities] for n in corruptions},
        "models": [{"label": s.label, "model": s.name, "source": s.source, "precision": s.precision,
                    "clean_predictions": clean[s.label].tolist(), "predictions": preds[s.label]}
                   for s in subjects],
        "seconds": round(time.perf_counter() - t0, 1),
        "examples": {"index": int(idx[0]), "images": [
            [C.corrupt(x[:1], name, s, SEED)[0].tolist() for s in [0, *severities]] for name in corruptions]},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULT_FILE, result)
    return result
