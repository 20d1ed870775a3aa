"""`fmbench study data-size`: test accuracy against training-set size, CNN beside ViT.

Each (model, size, seed) is an ordinary run directory under OUT/runs (reused when finished,
resumed when interrupted) trained on a stratified subset of the training split: `train_size`
in the run's config, so subsets are nested per seed (data.batches.stratified_subset) while the
validation split and the test set stay fixed. The results go to OUT/data_size.json.

Budget: a run on n images trains max(E, ceil(S / steps per epoch)) epochs, where E is the
preset's epochs and S the optimizer steps the preset makes on STEPS_AT images, so a small
subset is not judged after a handful of steps; everything else is the preset's recipe (its
schedule stretches with the epochs).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

from fmbench import rundir as R
from fmbench import runs, sharing
from fmbench.errors import ConfigError
from fmbench.spec import RunSpec, make_spec

RESULT_FILE = "data_size.json"
DEFAULT_SIZES = (1000, 2000, 5000, 10000, 20000, 54000)
STEPS_AT = 10_000


def parse_sizes(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_SIZES)
    try:
        sizes = sorted({int(t.replace("_", "")) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--sizes {text!r}: give whole numbers separated by commas, e.g. 1000,5000") from None
    if not sizes or sizes[0] < 10:
        raise ConfigError(f"--sizes {text!r}: each size must be at least 10 (one image per class)")
    return sizes


def epochs_for(rc: RunSpec, size: int, n_train: int = STEPS_AT) -> int:
    """The epochs a run on `size` images gets: the preset's, or enough to make the steps it makes on
    STEPS_AT images (or on all `n_train` training images, when there are fewer)."""
    cfg = rc.train_cfg
    min_steps = cfg.epochs * math.ceil(min(STEPS_AT, n_train) / cfg.batch_size)
    return max(cfg.epochs, math.ceil(min_steps / math.ceil(size / cfg.batch_size)))


def plan(models: list[str], preset: str | None, sizes: list[int], seeds: int, overrides: dict[str, Any],
         data, out: Path, device: str = "auto") -> list[tuple[str, int, RunSpec, Path]]:
    """(label, size, config bound to `data`, run directory) for every model, size and seed."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    planned = []
    for model in models:
        base = make_spec(model, preset, overrides)
        n_train = round(len(data.train_labels) * (1 - base.train_cfg.val_fraction))
        if sizes[-1] > n_train:
            raise ConfigError(f"--sizes: {sizes[-1]:,} is larger than the {n_train:,} training images left after "
                              f"the validation split ({base.train_cfg.val_fraction:.0%} of {len(data.train_labels):,})")
        label = model if preset is None else f"{model}/{preset}"
        for size in sizes:
            for i in range(seeds):
                over = {**overrides, "train_size": size, "seed": base.train_cfg.seed + i,
                        "epochs": epochs_for(base, size, n_train)}
                rc = make_spec(model, preset, over).on(data, device)
                run_dir = runs.run_dir_for(rc, out / "runs")
                planned.append((label, size, rc, run_dir))
    return planned


def run(models: list[str], preset: str | None, sizes: list[int], seeds: int, overrides: dict[str, Any], data,
        out: Path, device: str = "auto", storage: str | None = None, workers: int = 1) -> dict[str, Any]:
    """Train (or reuse) every planned run, then write OUT/data_size.json and return it. With a
    `storage` or several `workers`, the processes sharing it train the runs first (fmbench.sharing)."""
    from fmbench.fileio import write_json
    from fmbench.report import stats

    planned = plan(models, preset, sizes, seeds, overrides, data, out, device)
    jobs = [(run_dir, partial(runs.execute, rc, run_dir, data, device, explain=False,
                              head=f"[{n}/{len(planned)}] {label} on {size:,} images, seed {rc.train_cfg.seed}, "
                                   f"{rc.train_cfg.epochs} epochs"))
            for n, (label, size, rc, run_dir) in enumerate(planned, 1)]
    sharing.run_all("data-size", jobs, data.identity["key"], out, storage, workers)
    results: dict[str, dict[str, list[dict]]] = {}
    names: dict[str, str] = {}
    first_seed_preds: dict[tuple[str, int], Any] = {}
    for (label, size, rc, run_dir), (_, job) in zip(planned, jobs):
        job()
        summary = R.read_summary(run_dir)
        names[label] = rc.model
        results.setdefault(label, {}).setdefault(str(size), []).append({
            "seed": rc.train_cfg.seed, "epochs": rc.train_cfg.epochs, "run_dir": str(run_dir),
            "test_accuracy": summary["test_accuracy"], "test_f1_weighted": summary["test_f1_weighted"],
            "train_time_s": summary["train_time_s"]})
        if (label, size) not in first_seed_preds:
            probs, labels = R.read_outputs(run_dir)
            first_seed_preds[(label, size)] = (probs.argmax(1), labels)
    labels = list(results)
    mcnemar = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            rows = []
            for size in sizes:
                (pa, y), (pb, _) = first_seed_preds[(a, size)], first_seed_preds[(b, size)]
                t = stats.mcnemar(pa, pb, y)
                rows.append({"p_value": t.p_value, "b": t.b, "c": t.c})
            mcnemar[f"{a}|{b}"] = rows
            mcnemar[f"{b}|{a}"] = [{"p_value": r["p_value"], "b": r["c"], "c": r["b"]} for r in rows]
    first_rc = planned[0][2]
    result = {
        "kind": "data-size", "test_hash": data.test_hash, "sizes": sizes, "seeds": sorted({p[2].train_cfg.seed for p in planned}),
        "n_val": round(len(data.train_labels) * first_rc.train_cfg.val_fraction), "n_test": len(data.test_labels),
        "budget": (f"a run on n images trains max(E, ceil(S / steps per epoch)) epochs, E the preset's epochs and S "
                   f"the optimizer steps it makes on {STEPS_AT:,} images; the recipe is otherwise the preset's."),
        "model_names": names, "models": results, "mcnemar": mcnemar,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULT_FILE, result)
    return result
