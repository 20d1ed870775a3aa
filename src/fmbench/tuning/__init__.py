"""`fmbench tune`: a search of a model's declared space (models/__init__.py) with Optuna.

Each trial is an ordinary run directory, DIR/trials/NAME (runs.run_dir_for), trained by
runs.execute on the validation split alone; its value is the kept model's validation accuracy, and
each epoch's is reported to the pruner. The test set is evaluated once, after the choice, for the
chosen trial. The study lives in DIR/study.journal (Optuna's journal file: no server) or in the
storage named (SQLite, PostgreSQL or MySQL through SQLAlchemy, or a journal file elsewhere);
every process that runs the same search against one storage shares its trials. This package owns
the search's files (backend.py: Optuna's parts; recipe.py: best.json's reader):

    DIR/search.json    what defines the search and its study's name (another search is refused)
    DIR/study.journal  the default storage
    DIR/trials/        one run directory per trial
    DIR/best.json      the chosen recipe (`fmbench train MODEL --recipe DIR/best.json`)
    DIR/tune.md        the report (report/tuning.py)

Optuna is imported only when a search runs: `fmbench train --recipe` does not need it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from fmbench import rundir as R
from fmbench import space as S
from fmbench.errors import ConfigError, FmbenchError, TrainingDiverged
from fmbench.fileio import read_json, write_json
from fmbench.tuning.backend import fail_dead, load_optuna, make_pruner, make_sampler, retry, worker_id
from fmbench.tuning.recipe import RECIPE_VERSION, as_text

logger = logging.getLogger(__name__)

SEARCH, TRIALS, BEST, REPORT = "search.json", "trials", "best.json", "tune.md"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Search:
    """What defines a search: its trials' recipes (model, preset, fixed settings, space), the
    sampler's seed and the data set. The study is named after them, so another search in the same
    storage never continues this one's trials."""

    model: str
    preset: str
    fixed: dict[str, str]
    space: dict[str, S.Param]
    seed: int
    data_key: str | None = None

    def on(self, data) -> "Search":
        """This search on a loaded data set (its key enters the study's name)."""
        return replace(self, data_key=data.identity["key"])

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "preset": self.preset, "fixed": self.fixed,
                "space": {k: str(p) for k, p in self.space.items()}, "seed": self.seed, "data_key": self.data_key}

    @property
    def study(self) -> str:
        """MODEL-PRESET-HASH8, the hash over what changes the trials' results (not threads and such)."""
        from fmbench.config import RUNTIME_KEYS

        key = {**self.to_json(), "fixed": {k: v for k, v in self.fixed.items() if k not in RUNTIME_KEYS}}
        blob = json.dumps(key, sort_keys=True).encode()
        return f"{self.model}-{self.preset}-{hashlib.sha256(blob).hexdigest()[:8]}"


# checks: everything here runs before any data loads -----------------------------------------------

def plan_search(model: str, preset: str | None = None, overrides: dict[str, Any] | None = None,
                space: dict[str, Any] | None = None, seed: int = 0) -> Search:
    """The search of `model`'s declared space, with `space` (key -> Param or "--space" text) added
    or replacing entries, less the keys `overrides` fix; every range is checked against the model."""
    from fmbench.config import TrainConfig, field_names
    from fmbench.models import get_spec, resolve_preset
    from fmbench.spec import make_spec

    preset = resolve_preset(model, preset)
    fixed = {k: as_text(v) for k, v in (overrides or {}).items()}
    make_spec(model, preset, fixed)                                   # a bad --set fails here
    extra = {k: S.parse(k, v) if isinstance(v, str) else v for k, v in (space or {}).items()}
    settings = set(field_names(TrainConfig)) | set(field_names(get_spec(model).config_cls))
    for key in extra:
        if key not in settings:
            raise ConfigError(f"search space key {key!r} is not a setting of {model}; its settings: "
                              f"{', '.join(sorted(settings))}")
        if key in fixed:
            raise ConfigError(f"{key} is both fixed (--set) and searched (--space); give one")
    searched = {k: p for k, p in {**get_spec(model).space, **extra}.items() if k not in fixed}
    if not searched:
        raise ConfigError(f"nothing to search: --set fixes every key of {model}'s space")
    for key, p in searched.items():                                   # each end of each range is valid
        for value in p.values if isinstance(p, S.Choice) else (p.low, p.high):
            try:
                make_spec(model, preset, {**fixed, key: as_text(value)})
            except ConfigError as e:
                raise ConfigError(f"search space {key} {p}: {e}") from None
    return Search(model, preset, fixed, searched, seed)


def parse_budget(budget: str | float | None) -> float | None:
    """Seconds of wall-clock time: "90s", "20m", "1.5h", or a number of seconds; None: no budget."""
    if budget is None:
        return None
    m = re.fullmatch(r"\s*([-+]?\d+(?:\.\d*)?)\s*([smh]?)\s*", str(budget))
    if not m:
        raise ConfigError(f"--budget {budget}: expected a duration such as 90s, 20m or 1.5h")
    seconds = float(m[1]) * _UNITS[m[2]]
    if seconds <= 0:
        raise ConfigError(f"--budget must be more than 0, got {budget}")
    return seconds


def check_stop(trials: int | None, budget: float | None) -> None:
    if trials is None and budget is None:
        raise ConfigError("say when the search ends: --trials N, --budget DURATION, or both")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")

# the search --------------------------------------------------------------------------------------

class _Surplus(Exception):
    """A trial asked for when the search already had its N trials (workers asking at once): not run."""


class _QuietSurplus(logging.Filter):
    """Optuna logs every caught exception with its traceback; a surplus trial is an expected race
    between workers, not an error, so its record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Surplus))

def run_search(search: Search, out: Path, storage, data, device: str = "auto", trials: int | None = None,
               budget: float | None = None, pruner: Any = None, label: str = ""):
    """Run or continue `search` (bound to `data`: Search.on) in `out`, its study in `storage`, until
    the study has `trials` finished or running trials, or it has run `budget` seconds (counted over
    interruptions; the last trial started finishes). Returns the Optuna study."""
    o = load_optuna()
    out = Path(out)
    _claim(out, search, label)
    study = o.create_study(storage=storage, sampler=make_sampler(search.seed), pruner=pruner or make_pruner("median"),
                           study_name=search.study, direction="maximize", load_if_exists=True)
    _recover(study)
    spent, start = float(study.user_attrs.get("elapsed_s", 0.0)), time.monotonic()
    elapsed = lambda: spent + time.monotonic() - start  # noqa: E731
    objective = lambda trial: _objective(trial, search, out, data, device, trials)  # noqa: E731
    optimize_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _QuietSurplus) for f in optimize_log.filters):
        optimize_log.addFilter(_QuietSurplus())
    logger.info("search %s: study %s in %s", out, search.study, label)
    try:
        while _room(study, trials) and (budget is None or elapsed() < budget):
            study.optimize(objective, n_trials=1, catch=(_Surplus,))
    finally:
        study.set_user_attr("elapsed_s", round(max(float(study.user_attrs.get("elapsed_s", 0.0)), elapsed()), 1))
    return study


def _claim(out: Path, search: Search, label: str) -> None:
    """DIR/search.json: this search's; a directory holding another search is refused."""
    path = out / SEARCH
    if path.exists() and (held := read_json(path)).get("study") != search.study:
        raise ConfigError(f"{out} holds another search (study {held.get('study')}, model {held.get('model')}, "
                          f"preset {held.get('preset')}); choose another --out")
    write_json(path, {"study": search.study, "storage": label, **search.to_json()})


def _room(study, trials: int | None) -> bool:
    if trials is None:
        return True
    taken = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED", "RUNNING")]
    return len(taken) < trials

def _recover(study) -> None:
    """Fail and retry the trials that a dead process on this machine left running."""
    for t in fail_dead(study):
        retry(study, t)


def _objective(trial, search: Search, out: Path, data, device: str, trials: int | None) -> float:
    """Train one trial's run on the validation split; its kept model's validation accuracy."""
    from fmbench import runs
    from fmbench.spec import make_spec

    o = load_optuna()
    if trials is not None and sum(t.number < trial.number and t.state.name != "FAIL"
                                  for t in trial.study.get_trials(deepcopy=False)) >= trials:
        trial.set_user_attr("surplus", True)
        raise _Surplus(f"the search already has its {trials} trials")
    trial.set_user_attr("worker", worker_id())
    sampled = {k: p.suggest(trial, k) for k, p in search.space.items()}
    spec = make_spec(search.model, search.preset,
                     {**search.fixed, **{k: as_text(v) for k, v in sampled.items()}}).on(data, device)
    run_dir = runs.run_dir_for(spec, out / TRIALS)
    trial.set_user_attr("run_dir", str(run_dir.relative_to(out)))
    reported: set[int] = set()

    def on_epoch(epoch: int, record: dict[str, Any]) -> bool:
        trial.report(record["val_accuracy"], epoch)
        reported.add(epoch)
        return trial.should_prune()

    start = time.monotonic()
    try:
        runs.execute(spec, run_dir, data, device, explain=False, test=False, on_epoch=on_epoch,
                     head=f"trial {trial.number}")
    except TrainingDiverged as e:
        trial.set_user_attr("diverged", str(e))
        raise o.TrialPruned("diverged") from None
    except KeyboardInterrupt:
        retry(trial.study, trial)
        raise
    finally:
        trial.set_user_attr("seconds", round(time.monotonic() - start, 1))
        trial.set_user_attr("epochs", len(R.read_epochs(run_dir, check=False)))
    for record in R.read_epochs(run_dir):             # a reused run: its curve, for the pruner and the report
        if record["epoch"] not in reported:
            trial.report(record["val_accuracy"], record["epoch"])
    summary = R.read_summary(run_dir)
    if summary["epochs_run"] < spec.train_cfg.epochs and not summary["stopped_early"]:
        logger.info("trial %d pruned after epoch %d", trial.number, summary["epochs_run"])
        raise o.TrialPruned(f"pruned after epoch {summary['epochs_run']}")
    value = R.read_eval(run_dir, test=False)["splits"]["val"]["accuracy"]
    logger.info("trial %d: validation accuracy %.4f (%s)", trial.number, value,
                ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sampled.items()))
    return value


# the choice --------------------------------------------------------------------------------------

def finish(study, search: Search, out: Path, data, device: str = "auto", label: str = "") -> dict[str, Any]:
    """Choose the trial with the best validation accuracy (the earliest of equals), evaluate its
    test set once (here, when its run directory is here and no trial is running), and write
    best.json and tune.md; returns best.json's content. The recipe's settings are what changes a
    result: runtime settings (threads and such) stay out, as they stay out of a run's identity."""
    from fmbench import runs
    from fmbench.config import RUNTIME_KEYS
    from fmbench.report.tuning import write_report
    from fmbench.spec import read_spec

    out = Path(out)
    with _lock(out / ".finish.lock"):                 # workers sharing DIR finish one at a time
        trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
        done = [t for t in trials if t.state.name == "COMPLETE"]
        if not done:
            write_report(study, search, None, out / REPORT, label)
            raise FmbenchError(f"no trial of the search finished ({len(trials)} ran; see {out / REPORT}): "
                               "nothing to choose; search longer or with --pruner none")
        best = max(done, key=lambda t: (t.value, -t.number))
        run_dir, test = out / best.user_attrs["run_dir"], None
        if any(t.state.name == "RUNNING" for t in trials):
            logger.info("trials are still running elsewhere: the last worker to finish evaluates the test set")
        elif not (run_dir / R.CONFIG).exists():
            logger.info("trial %d ran on another machine: its test set is evaluated there", best.number)
        else:
            runs.execute(read_spec(run_dir), run_dir, data, device, explain=False, test=True, head="the chosen trial")
            test = R.read_summary(run_dir).get("test_accuracy")
        counts = {s: sum(t.state.name == s.upper() for t in trials) for s in ("complete", "pruned", "fail")}
        recipe = {"recipe_version": RECIPE_VERSION, "model": search.model, "preset": search.preset,
                  "overrides": {k: v for k, v in {**search.fixed, **best.params}.items() if k not in RUNTIME_KEYS}, "value": best.value, "metric": "val_accuracy",
                  "trial": best.number, "run_dir": best.user_attrs["run_dir"], "test_accuracy": test,
                  "search": {"study": search.study, "storage": label, **search.to_json(), "trials": counts}}
        write_json(out / BEST, recipe)
        write_report(study, search, recipe, out / REPORT, label)
    return recipe


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Wait for, then hold, an OS lock on `path` (fileio.writer_lock refuses at once instead)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system: no lock
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
