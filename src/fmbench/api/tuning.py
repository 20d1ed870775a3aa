"""The API of `fmbench tune` (re-exported as fmbench.tune): a hyperparameter search with Optuna
over a model's declared search space, chosen on the validation split, the test set evaluated once
for the chosen recipe (fmbench.tuning)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmbench import logs


@dataclass(frozen=True)
class Tuned:
    """A search's outcome: its chosen recipe (best.json's content) and where its files are."""

    recipe: dict[str, Any]
    path: Path           # DIR/best.json: `fmbench train MODEL --recipe PATH`, fmbench.train(..., recipe=PATH)
    report: Path         # DIR/tune.md
    study: Any           # the optuna.Study, for Optuna's own analysis and plots

    @property
    def value(self) -> float:
        """The chosen trial's validation accuracy."""
        return float(self.recipe["value"])

    def __repr__(self) -> str:
        test = self.recipe["test_accuracy"]
        return (f"Tuned({str(self.path)!r}, model={self.recipe['model']!r}, trial={self.recipe['trial']}, "
                f"val_accuracy={self.value:.4f}, test_accuracy={'None' if test is None else f'{test:.4f}'})")


def tune(model: str, preset: str | None = None, *, trials: int | None = None, budget: str | float | None = None,
         out: str | Path = "fmbench-tune", storage: str | None = None, seed: int = 0,
         space: dict[str, Any] | None = None, pruner: Any = "median", data=None, device: str = "auto",
         quiet: bool = False, **overrides: Any) -> Tuned:
    """What `fmbench tune` does: search `model`'s declared space (`fmbench models` shows it; `space`
    adds or replaces entries, as fmbench.space.Float/Int/Choice or "--space" text such as
    "1e-4..1e-2:log") around `preset`, with `overrides` fixed, until the study has `trials` trials
    or `budget` ("20m", or seconds) has passed; trials are run directories under OUT/trials,
    the study is in OUT/study.journal or `storage` (a URL that other processes may share). Returns
    the chosen recipe, also written to OUT/best.json, with the report OUT/tune.md. The same call
    again continues an interrupted search. `pruner`: median, hyperband, none or an Optuna pruner.
    Everything is checked before `data` (a data set, a function that loads one, or None) loads."""
    from fmbench import tuning as T
    from fmbench.api.studies import _data, _overrides
    from fmbench.tuning import backend

    out = Path(out)
    search = T.plan_search(model, preset, _overrides(overrides), space, seed)
    seconds = T.parse_budget(budget)
    T.check_stop(trials, seconds)
    chosen_pruner = backend.make_pruner(pruner)
    store, label = backend.open_storage(storage, out), backend.storage_label(storage, out)
    data = _data(data)
    search = search.on(data)
    with logs.quiet(quiet):
        study = T.run_search(search, out, store, data, device, trials, seconds, chosen_pruner, label)
        recipe = T.finish(study, search, out, data, device, label)
    return Tuned(recipe, out / T.BEST, out / T.REPORT, study)
