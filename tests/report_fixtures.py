"""Small synthetic run directories written through fmbench.rundir (the format's owner), for report tests.

Every run built here shares the same N test labels (so runs can be paired); which images a
run gets right depends on (model, seed), and exactly round(accuracy * N) of them are right.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from fmbench import CLASSES
from fmbench import rundir as R
from fmbench.models import REGISTRY

C = len(CLASSES)


def shared_labels(n: int) -> np.ndarray:
    """The shared test labels: every class present, fixed order."""
    return np.random.default_rng(12345).permutation(np.arange(n) % C).astype(np.int64)


def fake_images(n: int) -> torch.Tensor:
    """(n, 28, 28) uint8 noise standing in for the test images."""
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def make_probs(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """(N, C) float32 probabilities whose argmax is right for exactly round(accuracy * N) rows."""
    n = labels.size
    right = np.zeros(n, dtype=bool)
    right[rng.choice(n, size=int(round(accuracy * n)), replace=False)] = True
    # mistakes go mostly to the next class, sometimes the one after: a few dominant pairs
    preds = np.where(right, labels, (labels + 1 + (rng.random(n) < 0.3)) % C)
    probs = rng.random((n, C)) * 0.1
    probs[np.arange(n), preds] = rng.uniform(0.5, 0.95, n) * 2
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def split_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """eval.json's per-split record, computed like the engine does."""
    preds = probs.argmax(axis=1)
    cm = np.zeros((C, C), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    per_class, f1s, support = [], [], cm.sum(axis=1)
    for k in range(C):
        tp = cm[k, k]
        prec = tp / cm[:, k].sum() if cm[:, k].sum() else 0.0
        rec = tp / support[k] if support[k] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per_class.append({"class": CLASSES[k], "precision": float(prec), "recall": float(rec),
                          "f1": float(f1), "support": int(support[k])})
    return {"loss": float(-np.log(probs[np.arange(labels.size), labels]).mean()),
            "accuracy": float((preds == labels).mean()),
            "f1_weighted": float(np.sum(np.array(f1s) * support) / support.sum()),
            "n": int(labels.size), "per_class": per_class, "confusion_matrix": cm.tolist()}


def write_run(root: Path, model: str = "cnn_seed", *, n: int = 60, seed: int = 0,
              accuracy: float = 0.8, epochs: int = 5, test_hash: str = "testhash-synthetic",
              pretrained: bool = False, preset: str = "quick", name: str | None = None,
              explained: bool = True) -> Path:
    """Write a complete run directory under `root` and return its path."""
    d = Path(root) / (name or f"{model}-{preset}-s{seed}")
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([zlib.crc32(model.encode()), seed])
    labels = shared_labels(n)
    probs = make_probs(labels, accuracy, rng)
    train_cfg = {"seed": seed, "epochs": epochs, "lr": 1e-3, "batch_size": 64}
    blob = json.dumps([model, train_cfg], sort_keys=True).encode()
    config_hash = hashlib.sha256(blob).hexdigest()[:12]
    spec = REGISTRY.get(model)
    R.write_config(d, R.config_record(fmbench_version="0.1.0", model=model, family=spec and spec.family,
                                      tier=spec and spec.tier, preset=preset, overrides={"seed": seed},
                                      model_config={"width": 8}, train_config=train_cfg,
                                      config_hash=config_hash, device="cpu", data=None))
    R.write_env(d, {"python": "3.11.7", "torch": "2.13.0", "numpy": "2.4.6", "platform": "Linux",
                    "cpu": "synthetic", "device": "cpu", "precision": "fp32", "threads": 2,
                    "git_commit": "0123456789abcdef0123", "world_size": 1, "global_batch_size": 64,
                    "command": f"fmbench train {model}", "started": "2025-01-01T00:00:00"})
    rows = []
    if not pretrained:
        for e in range(1, epochs + 1):
            t = 1 - np.exp(-2 * e / epochs)      # saturating curves ending near `accuracy`
            wobble = float(rng.normal(0, 0.005))
            train = {"loss": 1.6 - t, "accuracy": 0.3 + (accuracy - 0.2) * t, "f1": 0.28 + (accuracy - 0.2) * t}
            val = {"loss": 1.7 - 0.9 * t + wobble, "accuracy": 0.3 + (accuracy - 0.3) * t + wobble,
                   "f1_weighted": 0.28 + (accuracy - 0.3) * t + wobble}
            rows.append(R.epoch_record(e, train, val, lr=1e-3, seconds=1.0, images_per_s=1000.0))
    R.write_epochs(d, rows)
    splits = {"test": split_metrics(labels, probs)}
    for split, extra, size in (("train", 0.1, 5 * n), ("val", 0.02, n)):
        lab = shared_labels(size)
        splits[split] = split_metrics(lab, make_probs(lab, min(accuracy + extra, 1.0), rng))
    best = max(1, epochs - 1)
    R.write_eval(d, best, splits)
    R.write_outputs(d, torch.from_numpy(probs), torch.from_numpy(labels))
    if explained:
        write_explanation(d, model, labels, accuracy, rng)
    R.write_summary(d, R.Summary(
        model=model, preset=preset, config_hash=config_hash, params=100_000 if "cnn" in model else 250_000,
        flops_per_image=2.5e6, train_time_s=None if pretrained else 12.5 * epochs,
        epochs_run=0 if pretrained else epochs, best_epoch=None if pretrained else best, stopped_early=False,
        train_images_per_s=None if pretrained else 5000.0, infer_images_per_s=20000.0, latency_ms=1.25,
        device="cpu", precision="fp32", test_hash=test_hash, test_accuracy=splits["test"]["accuracy"],
        test_f1_weighted=splits["test"]["f1_weighted"], pretrained=pretrained))
    return d


def write_explanation(d: Path, model: str, labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> None:
    """A synthetic explanation: blob-shaped maps, and deletion curves that beat random by `accuracy - 0.5`."""
    yy, xx = np.mgrid[:28, :28]
    centre = (10, 14) if "cnn" in model else (18, 14)
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 40.0).astype(np.float32)
    idx = R.sample_indices(labels.size)
    fractions = [round(f, 2) for f in np.linspace(0, 1, 21)]
    random_curve = [accuracy * (1 - f) for f in fractions]
    saliency_curve = [accuracy * (1 - f) ** 3 for f in fractions] if accuracy > 0.5 else random_curve
    trap = lambda c: float(np.trapezoid(c, fractions))  # noqa: E731
    record = {"method": "gradcam" if "cnn" in model else "rollout", "model": model, "sample_indices": idx,
              "class_means_n": int(labels.size),
              "deletion": {"n": int(labels.size), "fractions": fractions, "saliency_curve": saliency_curve,
                           "random_curve": random_curve, "saliency_auc": trap(saliency_curve),
                           "random_auc": trap(random_curve)},
              "randomisation": {"n": 20, "constant_maps": 1, "spearman_mean": round(float(rng.uniform(0, 0.2)), 4),
                                "spearman_abs_mean": 0.2},
              "seconds": {"samples": 0.01, "total": 1.0}}
    maps = {"sample_maps": torch.from_numpy(np.stack([blob] * len(idx))),
            "class_means": torch.from_numpy(np.stack([blob * (k + 1) / C for k in range(C)]))}
    R.write_explanation(d, record, maps)
