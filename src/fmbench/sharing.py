"""Many planned runs through one Optuna study: `--storage URL` and `--workers N` of `fmbench run` and
`fmbench study data-size`.

A command plans its runs and hands them here as jobs: a run directory and a call that reuses,
resumes or trains it (runs.execute, runs.evaluate_shipped). The plan becomes an Optuna study named
after it (the command, the data set, the run directories' names), with one queued trial per run
(parameter and user attribute `run`: its index in the plan). Every process given the same storage
is a worker: it pulls waiting trials and runs their jobs until each run has a COMPLETE trial,
waiting while others train theirs and taking over the run of a worker that died (a journal file:
a dead process on this machine; a database: any machine, by heartbeats). Its caller then goes over
the plan as it always does: every run is reused, and the result is written from the run
directories. Without a storage and with one worker nothing here runs and Optuna is not imported.

A run is trained once even when two workers queue it at once: a trial runs its run only when no
trial of that run has finished and none with a lower number is waiting or running; the others end
as PRUNED trials marked `skipped`, never run. docs/design.md, "Many runs", says more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import socket
import sys
import time
import warnings
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Sequence

from fmbench import logs
from fmbench import rundir as R
from fmbench.errors import ConfigError, FmbenchError

logger = logging.getLogger(__name__)

NEEDS = "sharing runs (--storage, --workers)"
POLL_S = 5.0            # how often an idle worker looks again for work (a dead worker's run, a retry)
Job = tuple[Path, Callable[[], Any]]   # (run directory, a picklable call that makes it: a functools.partial)


def wanted(storage: str | None, workers: int) -> bool:
    """Whether the runs are shared at all (a storage named, or more than one worker)."""
    return storage is not None or workers != 1


def check(storage: str | None, workers: int, out: Path) -> None:
    """--storage and --workers, checked before the data loads: a ConfigError (one line) for fewer than
    one worker, torchrun, a missing Optuna, an unknown storage scheme or an unreachable database."""
    from fmbench.engine.distributed import launched_by_torchrun

    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if not wanted(storage, workers):
        return
    if launched_by_torchrun():
        raise ConfigError("--storage and --workers do not combine with torchrun (its ranks train each run together)")
    from fmbench.tuning import backend

    backend.load_optuna(NEEDS)
    backend.open_storage(storage, out, retry_stale=False)


def study_name(kind: str, data_key: str, jobs: Sequence[Job]) -> str:
    """KIND-HASH8 over the plan: another plan (other runs, other data) never shares this one's trials."""
    blob = json.dumps([kind, data_key, [Path(d).name for d, _ in jobs]]).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:8]}"


def run_all(kind: str, jobs: Sequence[Job], data_key: str, out: Path, storage: str | None = None,
            workers: int = 1) -> None:
    """Run every job once among all the processes that share `storage` (default OUT/study.journal),
    `workers` of them started here, and return when every run has finished. Runs finished on another
    machine whose directories are not under OUT are a FmbenchError saying how to gather them."""
    if not wanted(storage, workers):
        return
    from fmbench.tuning.backend import storage_label

    name = study_name(kind, data_key, jobs)
    where = f"{workers} workers here, " if workers > 1 else ""
    logger.info("%d runs shared by %sstudy %s in %s", len(jobs), where, name, storage_label(storage, out))
    study = _study(storage, out, name)
    if workers == 1:
        _work(study, jobs)
    elif _unfinished(study, len(jobs)):
        _queue(study, jobs)                   # here, once: the workers would otherwise all queue at once
        _start(workers, jobs, storage, out, name)
    _check_finished(study, jobs, out)


# one worker ---------------------------------------------------------------------------------------

def _study(storage: str | None, out: Path, name: str):
    from fmbench.tuning.backend import load_optuna, open_storage

    o = load_optuna(NEEDS)
    return o.create_study(storage=open_storage(storage, out, retry_stale=False), study_name=name,
                          load_if_exists=True)


def _work(study, jobs: Sequence[Job]) -> None:
    """Queue the runs no trial holds, run waiting trials, and wait while other workers run theirs."""
    told: list[str] = []
    while True:
        _queue(study, jobs)
        if study.get_trials(deepcopy=False, states=_states("WAITING")):
            study.optimize(lambda trial: _objective(trial, jobs), n_trials=1)
        elif not _unfinished(study, len(jobs)):
            return
        else:                                 # said once per change: a worker on a dead machine is named
            running = study.get_trials(deepcopy=False, states=_states("RUNNING"))
            busy = sorted(str(t.user_attrs.get("worker", "?")) for t in running)
            if busy != told:
                logger.info("waiting for %d runs that other workers are making (%s)", len(busy), ", ".join(busy))
                told = busy
            time.sleep(POLL_S)


def _queue(study, jobs: Sequence[Job]) -> None:
    """Queue a trial for each run no trial holds: new, or its trial failed (a crash, Ctrl-C, a dead worker)."""
    _take_over(study)
    holding = _states("WAITING", "RUNNING", "COMPLETE")
    held = {t.user_attrs.get("run") for t in study.get_trials(deepcopy=False, states=holding)}
    for i, (run_dir, _) in enumerate(jobs):
        if i not in held:
            study.enqueue_trial({"run": i}, user_attrs={"run": i, "run_dir": Path(run_dir).name})


def _objective(trial, jobs: Sequence[Job]) -> float:
    """Run the trial's run unless another trial has it; the seconds it took."""
    from fmbench.tuning.backend import load_optuna, worker_id

    trial.set_user_attr("worker", worker_id())
    i = trial.user_attrs.get("run")
    if i is None or _taken(trial.study, trial.number, i):
        trial.set_user_attr("skipped", "no run was waiting" if i is None else "another trial holds this run")
        raise load_optuna().TrialPruned()
    trial.suggest_int("run", 0, len(jobs) - 1)          # the value it was queued with
    trial.set_user_attr("where", _where(jobs[i][0]))
    start = time.monotonic()
    jobs[i][1]()
    seconds = round(time.monotonic() - start, 1)
    trial.set_user_attr("seconds", seconds)
    return seconds


def _taken(study, number: int, run: int) -> bool:
    """Whether another trial of `run` has finished it, or comes first (a lower number, waiting or running)."""
    first = _states("WAITING", "RUNNING")
    return any(t.user_attrs.get("run") == run and t.number != number
               and (t.state.name == "COMPLETE" or (t.number < number and t.state in first))
               for t in study.get_trials(deepcopy=False))


def _take_over(study) -> None:
    """Fail the trials of dead workers (this machine's processes; a database's silent workers), so
    that their runs are queued again and resumed from their last epoch."""
    from fmbench.tuning.backend import fail_dead, load_optuna

    for t in fail_dead(study):
        logger.info("%s: its worker %s died; the run is taken over", t.user_attrs.get("run_dir"),
                    t.user_attrs["worker"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # Optuna calls fail_stale_trials experimental
        load_optuna().storages.fail_stale_trials(study)


def _states(*names: str) -> tuple:
    from fmbench.tuning.backend import load_optuna

    return tuple(load_optuna().trial.TrialState[n] for n in names)


def _unfinished(study, n: int) -> list[int]:
    done = {t.user_attrs.get("run") for t in study.get_trials(deepcopy=False, states=_states("COMPLETE"))}
    return [i for i in range(n) if i not in done]


# workers on this machine --------------------------------------------------------------------------

def _start(workers: int, jobs: Sequence[Job], storage: str | None, out: Path, name: str) -> None:
    """Start `workers` processes sharing the study and wait for them. Each is a fresh interpreter
    (spawn: no OpenMP or CUDA state forked) and trains with the runs' own `threads` setting."""
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger(logs.ROOT).level
    procs = [ctx.Process(target=_worker, args=(k, jobs, storage, out, name, level), name=f"fmbench-worker-{k}")
             for k in range(1, workers + 1)]
    for p in procs:
        p.start()
    try:
        running = list(procs)
        while running:                        # reap each as it ends (is_alive does): a dead worker left a
            wait([p.sentinel for p in running])          # zombie would look alive to those taking over its run
            running = [p for p in running if p.is_alive()]
    except KeyboardInterrupt:                 # Ctrl-C reaches every worker: each fails its trial and stops
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():                  # not reached by the signal: its trial is taken over next time
                p.terminate()
        raise
    for k, p in enumerate(procs, 1):
        if p.exitcode:
            logger.warning("worker %d stopped with exit code %s", k, p.exitcode)


def _worker(k: int, jobs: Sequence[Job], storage: str | None, out: Path, name: str, level: int) -> None:
    """A worker process's life: the parent's verbosity, its messages marked, one line for a user error."""
    logs.set_verbosity(level)
    logs.set_prefix(f"[worker {k}] ")
    try:
        _work(_study(storage, out, name), jobs)
    except FmbenchError as e:
        logger.error("error: %s", e)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _check_finished(study, jobs: Sequence[Job], out: Path) -> None:
    """Every run finished, and every run directory here: else one line saying what to do. (A run
    finished here whose directory has gone since is left to the caller, which trains it again.)"""
    if missing := _unfinished(study, len(jobs)):
        raise FmbenchError(f"{len(missing)} of {len(jobs)} runs did not finish (a worker stopped: see its "
                           "message above); run the same command again to continue")
    where = {t.user_attrs["run"]: t.user_attrs.get("where", "?")
             for t in study.get_trials(deepcopy=False, states=_states("COMPLETE"))}
    away = [where[i] for i, (d, _) in enumerate(jobs) if not R.is_complete(Path(d)) and where[i] != _where(d)]
    if away:
        raise FmbenchError(f"{len(away)} of {len(jobs)} runs finished elsewhere, their directories not under "
                           f"{Path(out) / 'runs'} (the first: {away[0]}): copy them there, or give every process "
                           "one --out on a shared file system, and run the command again to write the result")


def _where(run_dir: Path) -> str:
    """HOST:/ABSOLUTE/RUN_DIR, where a run is made."""
    return f"{socket.gethostname()}:{Path(run_dir).resolve()}"
