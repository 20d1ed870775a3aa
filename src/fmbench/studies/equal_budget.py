"""`fmbench study equal-budget`: every model searched under the same wall-clock budget, then each
model's chosen recipe trained on the full training set with several seeds and compared.

A reader can answer "the CNN wins" with "the ViT got a worse search"; this study gives each
family the same search (fmbench.tuning: Optuna, seeded TPE, pruning on validation accuracy) for
the same wall-clock time on the same machine, so that objection is measured, not argued.

    OUT/search/MODEL       one search per model, as `fmbench tune MODEL --budget B --out ...` makes
                           it (continued on a re-run: its budget counts over interruptions)
    OUT/runs/              the chosen recipes' runs, seeds counting up (reused, resumed: runs.py)
    OUT/equal_budget.json  what each search spent and found (RESULT_FILE)
    OUT/report.*           the comparison report, with the searches' section (report/studies.py)

A search may fix `train_size` (`--set train_size=10000`) to fit more trials into its budget; the
final runs train on the full training set (FULL_DATA_KEYS are dropped from the recipes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fmbench.config import RUNTIME_KEYS
from fmbench.errors import ConfigError
from fmbench.fileio import write_json

logger = logging.getLogger(__name__)

RESULT_FILE = "equal_budget.json"
FULL_DATA_KEYS = ("train_size",)


def plan(models: list[str], preset: str | None, budget: str | float, seeds: int, overrides: dict[str, str],
         search_seed: int = 0) -> tuple[list[Any], float]:
    """The searches (fmbench.tuning.Search, one per model) and the budget in seconds; every check
    runs here, before any data loads."""
    from fmbench.tuning import parse_budget, plan_search

    if not models:
        raise ConfigError("no models given")
    if len(set(models)) != len(models):
        raise ConfigError(f"--models names a model twice: {','.join(models)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    seconds = parse_budget(budget)
    if seconds is None:
        raise ConfigError("--budget is required: the wall-clock time each model's search gets, e.g. 20m")
    return [plan_search(m, preset, overrides, None, search_seed) for m in models], seconds


def final_settings(recipe: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """A chosen recipe's settings for the final runs: without the search's data subset, with the
    command's runtime settings (threads and such, which never enter a recipe)."""
    kept = {k: v for k, v in recipe["overrides"].items() if k not in FULL_DATA_KEYS}
    return {**kept, **{k: v for k, v in overrides.items() if k in RUNTIME_KEYS}}


def run(searches: list[Any], budget_s: float, seeds: int, overrides: dict[str, str], data, out: Path,
        device: str = "auto", storage: str | None = None, pruner: str = "median", command: str = "") -> Path | None:
    """Search each model for `budget_s` seconds (or continue its search), train each chosen recipe
    with `seeds` seeds, write OUT/equal_budget.json and the report; returns report.html."""
    from fmbench import tuning as T
    from fmbench.comparison import Entry, run_comparison
    from fmbench.tuning import backend

    out = Path(out)
    records, entries = [], []
    for n, search in enumerate(searches, 1):
        search, where = search.on(data), out / "search" / search.model
        label = backend.storage_label(storage, where)
        logger.info("[search %d/%d] %s: %.0f s of search in %s", n, len(searches), search.model, budget_s, where)
        study = T.run_search(search, where, backend.open_storage(storage, where), data, device, None, budget_s,
                             backend.make_pruner(pruner), label)
        recipe = T.finish(study, search, where, data, device, label)
        records.append(_record(study, search, recipe, where, out, budget_s, overrides))
        entries.append(Entry(search.model, search.preset, settings=final_settings(recipe, overrides)))
    result = {"kind": "equal-budget", "test_hash": data.test_hash, "budget_s": budget_s, "seeds": seeds,
              "pruner": pruner, "storage": storage, "full_data_keys": list(FULL_DATA_KEYS), "models": records}
    write_json(out / RESULT_FILE, result)
    return run_comparison(entries, {}, seeds, out, data, device, command=command, studies=[out])


def _record(study, search, recipe: dict[str, Any], where: Path, out: Path, budget_s: float,
            overrides: dict[str, str]) -> dict[str, Any]:
    """What one model's search spent and found, for equal_budget.json and the report."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    states = {s: sum(t.state.name == s.upper() for t in trials) for s in ("complete", "pruned", "fail")}
    return {"model": search.model, "preset": search.preset, "search_dir": str(where.relative_to(out)),
            "study": search.study, "seed": search.seed, "fixed": search.fixed,
            "space": {k: str(p) for k, p in search.space.items()},
            "elapsed_s": float(study.user_attrs.get("elapsed_s", 0.0)), "budget_s": budget_s,
            "trials": len(trials), **states,
            "trial_seconds": round(sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials), 1),
            "best_trial": recipe["trial"], "best_val_accuracy": recipe["value"],
            "chosen": {k: recipe["overrides"][k] for k in search.space if k in recipe["overrides"]},
            "search_test_accuracy": recipe["test_accuracy"], "final": final_settings(recipe, overrides)}
