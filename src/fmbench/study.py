"""The study: train (or take the shipped weights of) every model, then write the comparison report.

A study is a list of entries, each a model trained here with a preset or a model whose shipped
weights are evaluated. The default study answers the study's question in minutes: the study's
two architectures trained with their `fast` recipes, beside the shipped strong pair.

A finished run with the same config is reused instead of trained again; an interrupted one is
resumed from its `last` checkpoint. The report reads only the run directories.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fmbench import rundir as R
from fmbench import training
from fmbench.engine import distributed as D
from fmbench.errors import ConfigError
from fmbench.models import REGISTRY, get_spec

Log = Callable[[str], None]
STUDY_MODELS = ("cnn_seed", "vit_seed")


@dataclass(frozen=True)
class Entry:
    """One model of a study: trained here with `preset` (None: the model's default), or, when
    `pretrained`, its shipped weights evaluated without training."""

    model: str
    preset: str | None = None
    pretrained: bool = False


# `fmbench run`: the study's architectures on their short recipes beside the shipped strong pair.
DEFAULT_STUDY = (Entry("cnn_seed", "fast"), Entry("vit_seed", "fast"),
                 Entry("cnn_best", pretrained=True), Entry("vit_best", pretrained=True))


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def choose_entries(models: list[str] | None, preset: str | None, pretrained: bool) -> list[Entry]:
    """The study `fmbench run` means: the default study, every shipped model, or the named models."""
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
              data=None) -> list[tuple[Entry, training.RunConfig | None, Path]]:
    """(entry, config, run directory) for every entry and seed; seeds count up from the preset's
    seed. A pretrained entry has one run and no config (its weights card holds it). With `data`,
    each config is bound to it, so that runs on other data land in other directories."""
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
                    planned.append((e, None, out / "runs" / f"{e.model}-pretrained"))
                continue
            base = training.make_config(e.model, e.preset, overrides)
            rc = base if i == 0 else training.make_config(
                e.model, e.preset, {**overrides, "seed": base.train_cfg.seed + i})
            rc = rc.on(data) if data is not None else rc
            planned.append((e, rc, training.default_run_dir(rc, out / "runs")))
    return planned


def run_study(entries: list[Entry], overrides: dict[str, Any], seeds: int, out: Path, data,
              device: str = "auto", command: str = "", log: Log = _stderr) -> Path | None:
    """Train (or reuse, or resume) or evaluate every planned run, then build the report; returns report.html."""
    run_dirs = []
    planned = plan_runs(entries, overrides, seeds, out, data)
    for n, (entry, rc, run_dir) in enumerate(planned, 1):
        if rc is None:
            head = f"[{n}/{len(planned)}] {entry.model} (shipped weights)"
            _evaluate_shipped(entry.model, run_dir, data, device, head, log)
        else:
            train_or_reuse(rc, run_dir, data, device, f"[{n}/{len(planned)}] {rc.model} seed {rc.train_cfg.seed}", log)
        run_dirs.append(run_dir)
    if not D.is_main():
        return None
    from fmbench.report import build_report

    log("writing the comparison report")
    return build_report(run_dirs, out, test_images=data.test_images, command=command)


def train_or_reuse(rc: training.RunConfig, run_dir: Path, data, device: str, head: str, log: Log,
                   explain: bool = True) -> None:
    """Reuse a finished run, resume an interrupted one, or train a new one in `run_dir`."""
    if training.is_complete(run_dir):
        log(f"{head}: reusing the finished run {run_dir}")
        if explain and not (run_dir / R.EXPLAIN).exists():   # written before fmbench recorded explanations
            training.explain_existing(run_dir, data, device, log)
    elif (run_dir / R.CONFIG).exists():
        log(f"{head}: resuming the interrupted run {run_dir}")
        training.train(rc, run_dir, data, device, resume=True, log=log, explain=explain)
    else:
        log(f"{head}: training in {run_dir}")
        training.train(rc, run_dir, data, device, log=log, explain=explain)


def _evaluate_shipped(name: str, run_dir: Path, data, device: str, head: str, log: Log) -> None:
    """Evaluate shipped weights into `run_dir`, or reuse that evaluation if weights and test set match."""
    from fmbench.runtime import choose_device
    from fmbench.weights import evaluate_shipped, read_card

    if training.is_complete(run_dir):
        summary = R.read_summary(run_dir)
        if (summary.get("weights_sha256") == read_card(name)["sha256"]
                and summary.get("test_hash") == data.test_hash and (run_dir / R.EXPLAIN).exists()):
            log(f"{head}: reusing the evaluation in {run_dir}")
            return
    log(f"{head}: evaluating in {run_dir}")
    if D.is_main():
        evaluate_shipped(name, run_dir, data, choose_device(device), log=log)
    D.barrier()
