"""Finished run directories as plain `RunRecord`s, grouped by seed; the report never sees live objects.

The files are read and validated by `fmbench.rundir` (the format's one owner), so a broken or
unfinished run fails with one line naming the file, instead of a KeyError deep inside a plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmbench import rundir as R
from fmbench.errors import RunDirError


@dataclass(frozen=True, eq=False)
class RunRecord:
    """One finished run, as read from disk. `probs` is (N, C) float32, `labels` (N,) int64."""

    path: Path
    model: str
    seed: int | None
    config: dict[str, Any]
    env: dict[str, Any]
    epochs: list[dict[str, Any]]          # metrics.jsonl, one dict per epoch (empty if pretrained)
    eval: dict[str, Any]                  # eval.json
    summary: dict[str, Any]               # summary.json
    probs: np.ndarray
    labels: np.ndarray
    explanation: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None   # explain.json + maps, if recorded
    label: str = field(default="")        # display name; set by `group_runs`

    @property
    def preds(self) -> np.ndarray:
        """Predicted class per test image, (N,) int64."""
        return self.probs.argmax(axis=1)

    @property
    def n_test(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> list[str]:
        return [str(row["class"]) for row in self.eval["splits"]["test"]["per_class"]]

    @property
    def pretrained(self) -> bool:
        return bool(self.summary.get("pretrained", False))

    @property
    def test_hash(self) -> str:
        return str(self.summary["test_hash"])

    @property
    def config_hash(self) -> str:
        return str(self.config.get("config_hash", "?"))

    def split(self, name: str) -> dict[str, Any] | None:
        """eval.json's metrics for one split, or None when the run did not evaluate it."""
        return self.eval["splits"].get(name)


def load_run(run_dir: str | Path) -> RunRecord:
    """Read and validate one complete run directory; RunDirError names the first bad file."""
    d = Path(run_dir)
    if not d.is_dir():
        raise RunDirError(f"{d}: not a directory")
    summary = R.read_summary(d)
    config = R.read_config(d)
    pretrained = bool(summary.get("pretrained", False))
    epochs = R.read_epochs(d, required=not pretrained)
    probs, labels = R.read_outputs(d)
    ev = R.read_eval(d, probs.shape[1])
    n_eval = int(ev["splits"]["test"]["n"])
    if n_eval != probs.shape[0]:
        raise RunDirError(f"{d / R.OUTPUTS}: has {probs.shape[0]} test outputs but eval.json counts "
                          f"{n_eval} test images")
    seed = (config.get("train_config") or {}).get("seed")
    return RunRecord(path=d, model=str(summary["model"]), seed=None if seed is None else int(seed),
                     config=config, env=R.read_env(d), epochs=epochs, eval=ev, summary=summary,
                     probs=probs, labels=labels, explanation=R.read_explanation(d))


def check_same_test_set(runs: list[RunRecord]) -> None:
    """Refuse runs trained on different data sets (config.json "data") or evaluated on different
    test data: their predictions cannot be paired."""
    first = runs[0]
    for r in runs[1:]:
        a, b = first.config.get("data"), r.config.get("data")
        if a and b and a.get("key") != b.get("key"):
            raise RunDirError(
                f"cannot compare {first.path} and {r.path}: they were trained on different data sets "
                f"({a.get('name')} key {a.get('key')} vs {b.get('name')} key {b.get('key')})")
        if r.test_hash != first.test_hash:
            raise RunDirError(
                f"cannot compare {first.path} and {r.path}: they were evaluated on different test "
                f"data (test_hash {first.test_hash[:12]} vs {r.test_hash[:12]}); evaluate both on "
                f"the same test set first")
        if r.n_test != first.n_test or not np.array_equal(r.labels, first.labels):
            raise RunDirError(
                f"cannot compare {first.path} and {r.path}: same test_hash but different test "
                f"labels in test_outputs.safetensors (one of them is corrupt)")


def _group_key(r: RunRecord) -> tuple[str, str, str]:
    overrides = {k: v for k, v in (r.config.get("overrides") or {}).items() if k != "seed"}
    return r.model, str(r.config.get("preset", "")), json.dumps(overrides, sort_keys=True)


def group_runs(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Group runs that differ only by seed; returns {label: runs sorted by seed}, in input order.

    The label is the model name, plus the preset or a number when that alone is ambiguous.
    """
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
    models = [k[0] for k in groups]
    presets = [k[:2] for k in groups]
    out: dict[str, list[RunRecord]] = {}
    for i, (key, members) in enumerate(groups.items()):
        label = key[0]
        if models.count(key[0]) > 1:
            label = f"{key[0]}/{key[1]}" if presets.count(key[:2]) == 1 else f"{key[0]}#{i + 1}"
        members.sort(key=lambda r: (r.seed is None, r.seed or 0))
        out[label] = [replace(r, label=label) for r in members]
    return out


def load_runs(run_dirs: list[str | Path]) -> dict[str, list[RunRecord]]:
    """Load, check and group run directories: {label: [runs sorted by seed]}."""
    if not run_dirs:
        raise RunDirError("no run directories given")
    seen: set[Path] = set()
    for d in run_dirs:
        p = Path(d).resolve()
        if p in seen:
            raise RunDirError(f"{d}: run directory given twice")
        seen.add(p)
    runs = [load_run(d) for d in run_dirs]
    check_same_test_set(runs)
    return group_runs(runs)
