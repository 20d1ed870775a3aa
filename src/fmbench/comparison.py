"""`fmbench run`'s comparison: train (or take the shipped weights of) every model, then write the report.

A study is a list of entries, each a model trained here with a preset or a model whose shipped
weights are evaluated. The default study answers the study's question in minutes: the study's
two architectures trained with their `fast` recipes, beside the shipped strong pair.

Each run goes through `runs` (reused when finished, resumed when interrupted, trained otherwise;
shipped weights evaluated once per data set). The report reads only the run directories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fmbench import runs, sharing
from fmbench.engine import distributed as D
from fmbench.errors import ConfigError
from fmbench.models import REGISTRY, get_spec
from fmbench.spec import RunSpec, make_spec

logger = logging.getLogger(__name__)
STUDY_MODELS = ("cnn_seed", "vit_seed")


@dataclass(frozen=True)
class Entry:
    """One model of a study: trained here with `preset` (None: the model's default) and its own
    `settings` (a recipe's, as `--set` text; the command's --set go on top), or, when `pretrained`,
    its shipped weights evaluated without training."""

    model: str
    preset: str | None = None
    pretrained: bool = False
    settings: dict[str, str] = field(default_factory=dict)


# `fmbench run`: the study's architectures on their short recipes beside the shipped strong models
# (the CNN, the ViT and the hybrid between them).
DEFAULT_STUDY = (Entry("cnn_seed", "fast"), Entry("vit_seed", "fast"),
                 Entry("cnn_best", pretrained=True), Entry("vit_best", pretrained=True),
                 Entry("hybrid_best", pretrained=True))


def choose_entries(models: list[str] | None, preset: str | None, pretrained: bool,
                   recipes: list[str | Path] = ()) -> list[Entry]:
    """The study `fmbench run` means: the default study, every shipped model, or the named models
    and the models of the `recipes` (fmbench tune's best.json files), each trained with its recipe."""
    if recipes:
        from fmbench.tuning.recipe import read_recipe

        if pretrained:
            raise ConfigError("--recipe does not apply to --pretrained (the shipped weights are evaluated)")
        if preset is not None:
            raise ConfigError("--preset does not apply to --recipe (a recipe holds its preset); leave it out")
        chosen = [Entry(m) for m in models or []]
        for path in recipes:
            model, held, settings = read_recipe(path)
            chosen.append(Entry(model, held, settings=settings))
        return chosen
    if pretrained:
        from fmbench.weights import available

        if preset is not None:
            raise ConfigError("--preset does not apply to --pretrained (the shipped weights are evaluated)")
        shipped = available()
        names = models if models else [m for m in REGISTRY if m in shipped]
        return [Entry(m, pretrained=True) for m in names]
    if models is None and preset is None:
        return list(DEFAULT_STUDY)
    return [Entry(m, preset) for m in (models or STUDY_MODELS)]


def plan_runs(entries: list[Entry], overrides: dict[str, Any], seeds: int, out: Path,
              data=None, device: str = "auto") -> list[tuple[Entry, RunSpec | None, Path]]:
    """(entry, spec, run directory) for every entry and seed; seeds count up from the preset's
    seed. A pretrained entry has one run and no spec (its weights card holds it). With `data`,
    each spec is bound to it and the device, so that runs on other data land in other directories."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if not entries:
        raise ConfigError("no models given")
    planned = []
    for i in range(seeds):
        for e in entries:
            if e.pretrained:
                if i == 0:
                    from fmbench.weights import resolve

                    get_spec(e.model)           # an unknown name fails before any work
                    resolve(e.model)
                    planned.append((e, None, runs.shipped_run_dir(e.model, out / "runs")))
                continue
            settings = {**e.settings, **overrides}
            base = make_spec(e.model, e.preset, settings)
            spec = base if i == 0 else make_spec(e.model, e.preset, {**settings, "seed": base.train_cfg.seed + i})
            spec = spec.on(data, device) if data is not None else spec
            planned.append((e, spec, runs.run_dir_for(spec, out / "runs")))
    return planned


def run_comparison(entries: list[Entry], overrides: dict[str, Any], seeds: int, out: Path, data,
                   device: str = "auto", command: str = "", storage: str | None = None,
                   workers: int = 1, studies: list[Path] = ()) -> Path | None:
    """Train (or reuse, or resume) or evaluate every planned run, then build the report (with the
    sections of the study directories in `studies`); returns report.html. With a `storage` or
    several `workers`, the processes sharing it make the runs first (fmbench.sharing)."""
    planned = plan_runs(entries, overrides, seeds, out, data, device)
    jobs = [(run_dir, partial(runs.evaluate_shipped, entry.model, run_dir, data, device,
                              f"[{n}/{len(planned)}] {entry.model} (shipped weights)") if spec is None else
             partial(runs.execute, spec, run_dir, data, device,
                     head=f"[{n}/{len(planned)}] {spec.model} seed {spec.train_cfg.seed}"))
            for n, (entry, spec, run_dir) in enumerate(planned, 1)]
    sharing.run_all("run", jobs, data.identity["key"], out, storage, workers)
    for _, job in jobs:
        job()
    if not D.is_main():
        return None
    from fmbench.report import build_report

    logger.info("writing the comparison report")
    return build_report([*(d for d, _ in jobs), *studies], out, test_images=data.test_images, command=command)
