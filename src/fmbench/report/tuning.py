"""tune.md: a search's report, from its study (the storage) and its chosen recipe (fmbench.tuning).

The trials, the best validation accuracy against wall time, what was pruned and when, and the
parameters' importances. Rebuilt from the storage each time a worker finishes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from fmbench.fileio import write_text
from fmbench.report.document import Doc, to_markdown
from fmbench.space import describe


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _acc(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def write_report(study, search, recipe: dict[str, Any] | None, path: Path, storage: str) -> Path:
    """Write `path` (tune.md) for `study`; `recipe` is best.json's content (None: no trial finished)."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    doc = Doc(fig_dir=Path(path).parent)
    _search(doc, search, recipe, trials, storage)
    _trials(doc, search, trials)
    _best_over_time(doc, trials)
    _pruned(doc, trials)
    _importances(doc, study, trials)
    write_text(path, to_markdown(doc, f"Search: {search.model} ({search.preset})"))
    return Path(path)


def _search(doc: Doc, search, recipe, trials, storage: str) -> None:
    doc.section("The search")
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    doc.p(f"`{search.model}` on preset `{search.preset}`, study `{search.study}` in `{storage}`; TPE sampler "
          f"seeded {search.seed}. Fixed: {', '.join(f'`{k}={v}`' for k, v in search.fixed.items()) or 'nothing'}. "
          f"Searched: {describe(search.space)}.")
    doc.p(f"{len(trials)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n) + ".")
    if recipe is None:
        doc.p("No trial finished, so nothing was chosen.")
        return
    test = recipe["test_accuracy"]
    doc.p(f"Chosen on the validation split alone: trial {recipe['trial']}, validation accuracy "
          f"{recipe['value']:.4f} (`{recipe['run_dir']}`). " +
          (f"Its test accuracy, evaluated once after the choice: {test:.4f}." if test is not None else
           "Its test set is not evaluated here (trials were still running, or it ran on another machine)."))


def _trials(doc: Doc, search, trials) -> None:
    doc.section("Trials")
    keys = list(search.space)
    rows = []
    for t in trials:
        note = f"resumes trial {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else ""
        note = "diverged" if t.user_attrs.get("diverged") else note
        rows.append([str(t.number), t.state.name.lower(), _acc(t.value if t.state.name == "COMPLETE" else None),
                     str(t.user_attrs.get("epochs", "")), _num(t.user_attrs.get("seconds", "")),
                     *[_num(t.params[k]) if k in t.params else "" for k in keys], note])
    doc.table(["trial", "state", "val accuracy", "epochs", "seconds", *keys, "note"], rows,
              "llrrr" + "r" * len(keys) + "l")


def _best_over_time(doc: Doc, trials) -> None:
    doc.section("Best validation accuracy against wall time")
    done = sorted((t for t in trials if t.state.name == "COMPLETE" and t.datetime_complete), key=lambda t: t.datetime_complete)
    if not done:
        doc.p("No trial finished.")
        return
    start = min(t.datetime_start for t in trials if t.datetime_start)
    rows, best = [], None
    for t in done:
        best = t if best is None or t.value > best.value else best
        minutes = (t.datetime_complete - start).total_seconds() / 60
        rows.append([f"{minutes:.1f}", str(t.number), _acc(t.value), f"{best.value:.4f} (trial {best.number})"])
    doc.p("Minutes since the first trial started, at each finished trial (every worker's).")
    doc.table(["minutes", "trial", "val accuracy", "best so far"], rows, "rrrl")


def _pruned(doc: Doc, trials) -> None:
    doc.section("Pruned trials")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    if not pruned:
        doc.p("None was pruned.")
        return
    rows = [[str(t.number), str(t.last_step or ""), _acc(t.intermediate_values.get(t.last_step)),
             "diverged" if t.user_attrs.get("diverged") else "below the pruner's bar"] for t in pruned]
    doc.p("Each stopped after the epoch given, with the validation accuracy it had then.")
    doc.table(["trial", "after epoch", "val accuracy", "why"], rows, "rrrl")


def _importances(doc: Doc, study, trials) -> None:
    doc.section("Parameter importances")
    if sum(t.state.name == "COMPLETE" for t in trials) < 2:
        doc.p("Two finished trials are needed to weigh the parameters.")
        return
    if len({t.value for t in trials if t.state.name == "COMPLETE"}) < 2:
        doc.p("Every finished trial scored the same: no parameter separates them.")
        return
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    with warnings.catch_warnings():             # a few trials: Optuna warns that its quantiles coincide
        warnings.simplefilter("ignore")
        try:                                    # PED-ANOVA: Optuna's own, no scikit-learn
            weights = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
        except (RuntimeError, ValueError) as e:
            doc.p(f"Not computed: {e}")
            return
    doc.p("PED-ANOVA (Optuna) over the finished trials: how much each parameter's value separates the "
          "best trials from the rest; the shares sum to 1.")
    doc.table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in weights.items()], "lr")
