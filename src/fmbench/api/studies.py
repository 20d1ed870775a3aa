"""The API of the commands that make many runs: `fmbench run` and `fmbench study` (re-exported as
fmbench.run_study, fmbench.study_data_size, fmbench.study_robustness, fmbench.study_equal_budget). Each checks its arguments
before it loads the data, so a bad name fails at once: `data` is a loaded data set, a function
that loads one (called after the checks), or None for load_data()."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fmbench import logs
from fmbench.errors import ConfigError


def _overrides(overrides: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else str(v) for k, v in overrides.items()}


def _data(data):
    """`data` as given, loaded now if it is a function that loads it (the CLI's data options), or load_data()."""
    from fmbench.api import load_data

    return load_data() if data is None else data() if callable(data) else data


def run_study(models: Sequence[str] | None = None, preset: str | None = None, *, seeds: int = 1,
              out: str | Path = "fmbench-study", pretrained: bool = False, recipes: Sequence[str | Path] = (),
              data=None, device: str = "auto", command: str = "", storage: str | None = None, workers: int = 1,
              quiet: bool = False, **overrides: Any) -> Path | None:
    """What `fmbench run` does: train (or reuse, or resume) each model `seeds` times and evaluate the
    shipped ones, then write the comparison report into `out`; returns report.html (None on the
    non-main ranks of torchrun). No `models` and no `preset`: the default study (cnn_seed and
    vit_seed on `fast`, the shipped cnn_best and vit_best); `pretrained`: shipped weights only;
    `recipes`: fmbench tune's best.json files, each model trained with its recipe (beside `models`).
    `workers` processes here, and every process given the same `storage` URL, share the runs
    (fmbench.sharing; default storage OUT/study.journal); each trains with the `threads` setting."""
    from fmbench import sharing
    from fmbench.comparison import choose_entries, plan_runs, run_comparison

    out, overrides = Path(out), _overrides(overrides)
    entries = choose_entries(list(models) if models is not None else None, preset, pretrained, list(recipes))
    if pretrained and (overrides or seeds != 1):
        raise ConfigError("--set, --precision and --seeds do not apply to --pretrained (the shipped weights are "
                          "evaluated as they are)")
    plan_runs(entries, overrides, seeds, out)         # bad options fail before the data loads
    sharing.check(storage, workers, out)
    data = _data(data)
    with logs.quiet(quiet):
        return run_comparison(entries, overrides, seeds, out, data, device, command, storage, workers)


def study_data_size(models: Sequence[str] = ("cnn_seed", "vit_seed"), sizes: Sequence[int] | str | None = None, *,
                    seeds: int = 2, preset: str | None = None, out: str | Path = "data-size-study", data=None,
                    device: str = "auto", storage: str | None = None, workers: int = 1, quiet: bool = False,
                    **overrides: Any) -> Path:
    """What `fmbench study data-size` does: train each model on nested stratified subsets of the
    training split (`sizes`, default 1,000 to 54,000) with `seeds` seeds, write OUT/data_size.json
    and the study's report; returns its report.html. `storage` and `workers` as in run_study."""
    from fmbench import sharing
    from fmbench.report.studies import write_study_report
    from fmbench.spec import make_spec
    from fmbench.studies import data_size

    out, overrides = Path(out), _overrides(overrides)
    sizes = data_size.parse_sizes(sizes if sizes is None or isinstance(sizes, str) else ",".join(map(str, sizes)))
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    for m in models:                                  # unknown names and bad settings fail before the data loads
        make_spec(m, preset, overrides)
    sharing.check(storage, workers, out)
    data = _data(data)
    with logs.quiet(quiet):
        result = data_size.run(list(models), preset, sizes, seeds, overrides, data, out, device, storage, workers)
    return write_study_report(result, out)


def study_equal_budget(models: Sequence[str] = ("cnn_seed", "vit_seed"), budget: str | float = "20m", *,
                       seeds: int = 3, preset: str | None = None, out: str | Path = "equal-budget-study",
                       storage: str | None = None, search_seed: int = 0, pruner: str = "median", data=None,
                       device: str = "auto", command: str = "", quiet: bool = False,
                       **overrides: Any) -> Path | None:
    """What `fmbench study equal-budget` does: search each model's declared space (fmbench.tune)
    for the same wall-clock `budget` ("20m", or seconds), one model after another on this machine,
    then train each chosen recipe on the full training set with `seeds` seeds and write the
    comparison report with the searches' section into `out`; returns report.html. `overrides` fix
    settings for the searches and the final runs alike, except `train_size`, which limits only the
    searches. The same call again continues the searches (their budget counts over
    interruptions) and reuses finished runs."""
    from fmbench.studies import equal_budget

    out, overrides = Path(out), _overrides(overrides)
    searches, seconds = equal_budget.plan(list(models), preset, budget, seeds, overrides, search_seed)
    from fmbench.tuning.backend import make_pruner

    make_pruner(pruner)                               # a bad --pruner (or no Optuna) fails before the data loads
    data = _data(data)
    with logs.quiet(quiet):
        return equal_budget.run(searches, seconds, seeds, overrides, data, out, device, storage, pruner, command)


def study_robustness(run_dirs: Sequence[str | Path] = (), weights: Sequence[str] = (), *,
                     corruptions: str | None = None, severities: str = "1-5", images: int | None = 2000,
                     baseline: str | None = None, out: str | Path = "robustness-study", data=None,
                     device: str = "auto", quiet: bool = False) -> Path:
    """What `fmbench study robustness` does: evaluate trained runs and shipped weights (default when
    neither is named: every shipped model) on seeded corruptions at the given severities, `images`
    test images per condition (None: all); write OUT/robustness.json and the study's report;
    returns its report.html. mCE is relative to `baseline` (a model's label; default the first)."""
    from fmbench.report.studies import write_study_report
    from fmbench.runs import check_same_data
    from fmbench.runtime import choose_device
    from fmbench.spec import read_spec
    from fmbench.studies import robustness as rb

    out = Path(out)
    chosen, levels = rb.parse_corruptions(corruptions), rb.parse_severities(severities)
    if images is not None and images < 1:
        raise ConfigError(f"--images must be >= 1, got {images}")
    dev = choose_device(device)
    subjects = rb.subjects([Path(d) for d in run_dirs], list(weights), dev)
    labels = [s.label for s in subjects]
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"--baseline {baseline!r} is not one of the models: {', '.join(labels)}")
    data = _data(data)
    for d in run_dirs:
        check_same_data(read_spec(Path(d)), data, Path(d))
    with logs.quiet(quiet):
        result = rb.run(subjects, data.test_images, data.test_labels, data.test_hash, chosen, levels, images, out, dev)
    if baseline:
        result["baseline"] = baseline
    return write_study_report(result, out)
