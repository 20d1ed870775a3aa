"""The study: train every model (several seeds if asked) and write the comparison report.

A finished run with the same config is reused instead of trained again; an interrupted one is
resumed from its `last` checkpoint. The report reads only the run directories.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from fmbench import training
from fmbench.engine import distributed as D
from fmbench.errors import ConfigError

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def plan_runs(models: list[str], preset: str, overrides: dict[str, Any], seeds: int,
              out: Path) -> list[tuple[training.RunConfig, Path]]:
    """(config, run directory) for every model and seed; seeds count up from the preset's seed."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if not models:
        raise ConfigError("no models given")
    planned = []
    for i in range(seeds):
        for name in models:
            base = training.make_config(name, preset, overrides)
            rc = base if i == 0 else training.make_config(
                name, preset, {**overrides, "seed": base.train_cfg.seed + i})
            planned.append((rc, training.default_run_dir(rc, out / "runs")))
    return planned


def run_study(models: list[str], preset: str, overrides: dict[str, Any], seeds: int, out: Path, data,
              device: str = "auto", command: str = "", log: Log = _stderr) -> Path | None:
    """Train (or reuse, or resume) every planned run, then build the report; returns report.html."""
    run_dirs = []
    planned = plan_runs(models, preset, overrides, seeds, out)
    for n, (rc, run_dir) in enumerate(planned, 1):
        head = f"[{n}/{len(planned)}] {rc.model} seed {rc.train_cfg.seed}"
        if training.is_complete(run_dir):
            log(f"{head}: reusing the finished run {run_dir}")
        elif (run_dir / "config.json").exists():
            log(f"{head}: resuming the interrupted run {run_dir}")
            training.train(rc, run_dir, data, device, resume=True, log=log)
        else:
            log(f"{head}: training in {run_dir}")
            training.train(rc, run_dir, data, device, log=log)
        run_dirs.append(run_dir)
    if not D.is_main():
        return None
    from fmbench.report import build_report

    log("writing the comparison report")
    return build_report(run_dirs, out, test_images=data.test_images, command=command)
