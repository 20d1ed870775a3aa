"""Planned runs shared between processes (fmbench.sharing: `--storage URL`, `--workers N` of `fmbench
study data-size` and `fmbench run`): each run is trained once whoever queues it, a dead worker's run
is taken over and resumed, the result is one process's, bad input is one line, and without the
options nothing changes and Optuna is not imported. On tiny random IDX data, one thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from conftest import load_idx, write_tiny_idx
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import read_json, stub_speed

import fmbench
from fmbench import sharing
from fmbench.errors import FmbenchError
from fmbench.tuning import backend

optuna = pytest.importorskip("optuna", reason="optuna is a test dependency (pip install -e '.[test]')")

SRC = Path(__file__).resolve().parents[1] / "src"
# 40 train images -> 30 train / 10 val: runs on 20 images train 2 epochs, on 30 images 1 (data_size.epochs_for).
SETS = {"epochs": 1, "batch_size": 8, "val_fraction": 0.25, "precision": "fp32", "eval_batch_size": 64, "threads": 1}
STUDY = ["study", "data-size", "--models", "cnn_seed,vit_seed", "--sizes", "20,30", "--seeds", "1",
         *[a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]]
PLANNED = 4                       # 2 models x 2 sizes x 1 seed


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("sharing") / "idx")


@pytest.fixture(scope="module")
def data(idx):
    return load_idx(idx)


@pytest.fixture(scope="module")
def alone(tmp_path_factory, data) -> dict:
    """The data-size study run by one process, as it always was: data_size.json."""
    out = tmp_path_factory.mktemp("alone") / "ds"
    with pytest.MonkeyPatch.context() as mp:
        stub_speed(mp)
        fmbench.study_data_size(["cnn_seed", "vit_seed"], "20,30", seeds=1, out=out, data=data, device="cpu",
                                quiet=True, **SETS)
    return read_json(out / "data_size.json")


def same_result(a: dict) -> tuple:
    """What a data-size result says, less where its runs are and how long they took."""
    runs = {label: {size: [{k: v for k, v in r.items() if k not in ("run_dir", "train_time_s")} for r in rows]
                    for size, rows in sizes.items()} for label, sizes in a["models"].items()}
    return runs, a["mcnemar"], a["sizes"], a["seeds"]


def trials_of(storage: str | None, out: Path) -> list:
    store = backend.open_storage(storage, out, retry_stale=False)
    (name,) = optuna.get_all_study_names(store)
    return optuna.load_study(study_name=name, storage=store).get_trials()


def once_each(trials: list, n: int) -> list:
    """The COMPLETE trial of each run, checking there is exactly one; the rest never ran a run."""
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["run"] for t in done) == list(range(n))
    assert all(t.state.name == "FAIL" or t.user_attrs.get("skipped") for t in trials if t not in done)
    return sorted(done, key=lambda t: t.params["run"])


# ---------------------------------------------------------------- the claim: one trial per run

def fake_jobs(n: int, calls: list, root: Path = Path("runs")) -> list:
    return [(root / f"run{i}", partial(calls.append, i)) for i in range(n)]


def test_a_run_queued_twice_is_run_once():
    study, calls = optuna.create_study(), []
    for i in (0, 0, 1):                                 # two workers queued run 0 at once
        study.enqueue_trial({"run": i}, user_attrs={"run": i})
    sharing._work(study, fake_jobs(3, calls))
    assert sorted(calls) == [0, 1, 2]
    twin = study.trials[1]
    assert twin.state.name == "PRUNED" and twin.user_attrs["skipped"] == "another trial holds this run"
    sharing._work(study, fake_jobs(3, calls))           # again: every run has finished, nothing runs
    assert sorted(calls) == [0, 1, 2]


def test_the_lower_numbered_trial_of_a_run_goes_first():
    study = optuna.create_study()
    for _ in range(2):
        study.enqueue_trial({"run": 0}, user_attrs={"run": 0})
    assert sharing._taken(study, 1, 0) and not sharing._taken(study, 0, 0)   # trial 0 waits: it comes first
    assert study.ask().number == 0 and sharing._taken(study, 1, 0)           # running, it still does
    study.tell(0, state=optuna.trial.TrialState.FAIL)
    assert not sharing._taken(study, 1, 0)                                   # it failed: trial 1 runs it
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"run": 0}))
    assert sharing._taken(study, 1, 0)                                       # a finished one wins


def test_a_dead_workers_run_is_taken_over(tmp_path):
    """A trial left running by a process of this machine that has died is failed and its run queued again."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                         # exited and reaped: its pid names no process
    storage = backend.open_storage(None, tmp_path, retry_stale=False)
    study, calls = optuna.create_study(storage=storage, study_name="s"), []
    study.enqueue_trial({"run": 0}, user_attrs={"run": 0})
    study.ask().set_user_attr("worker", f"{backend.worker_id().rpartition(':')[0]}:{dead.pid}")
    sharing._work(study, fake_jobs(2, calls))
    assert sorted(calls) == [0, 1]
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].params == {"run": 0} and study.trials[1].user_attrs["worker"] == backend.worker_id()


def test_runs_finished_elsewhere_are_named_and_not_trained_again(tmp_path):
    study = optuna.create_study()
    for i in range(2):
        study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"run": i, "where": f"other:/o/runs/run{i}"}))
    with pytest.raises(FmbenchError, match=r"2 of 2 runs finished elsewhere, .* \(the first: other:/o/runs/run0\): "
                                           "copy them there"):
        sharing._check_finished(study, fake_jobs(2, [], tmp_path / "runs"), tmp_path)


# ---------------------------------------------------------------- without the options: as before

def test_without_storage_or_workers_nothing_is_shared_and_optuna_is_not_needed(tmp_path, data, monkeypatch):
    stub_speed(monkeypatch)
    monkeypatch.setitem(sys.modules, "optuna", None)      # `import optuna` raises ImportError
    fmbench.study_data_size(["cnn_seed"], "30", seeds=1, out=tmp_path / "ds", data=data, device="cpu", quiet=True,
                            **SETS)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if not p.is_dir()) == ["data_size.json", "report.html",
                                                                                      "report.md"]


# ---------------------------------------------------------------- bad input: one line, exit 2

BAD = {
    "no workers": (["--workers", "0"], "--workers must be >= 1, got 0"),
    "unknown storage scheme": (["--storage", "redis://localhost/0"], "unknown scheme 'redis'"),
    "unreachable database": (["--storage", "sqlite:////nonexistent-dir/runs.db"], "cannot reach the database"),
    "no Optuna": (["--workers", "2"], "sharing runs (--storage, --workers) needs Optuna: pip install 'fmbench[tune]'"),
}


@pytest.mark.parametrize("command", [["run", "--models", "cnn_seed"], ["study", "data-size", "--sizes", "20"]],
                         ids=["run", "study"])
@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, command, run_cli, idx, tmp_path, monkeypatch):
    extra, message = BAD[case]
    if case == "no Optuna":
        monkeypatch.setitem(sys.modules, "optuna", None)
    code, out, err = run_cli(*command, *extra, "--out", tmp_path / "o", "--data-dir", idx, "--no-verify",
                             "--no-download", "--device", "cpu")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("fmbench: error: ") and message in err, err


# ---------------------------------------------------------------- several processes

WORKER = """
import os, sys
import fmbench.runs as r, fmbench.sharing as s
s.POLL_S = 0.2                        # look for a dead worker's run often
r.measure_inference = lambda *a, **k: {'infer_images_per_s': 1.0, 'latency_ms': 1.0}
if os.environ.get('KILL_AFTER_EPOCH'):  # die as `kill -9` would, after the first epoch's checkpoint
    fit = r.fit
    r.fit = lambda *a, **k: fit(*a, **{**k, 'on_epoch': lambda epoch, record: os.kill(os.getpid(), 9)})
from fmbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_worker(argv: list, kill: bool = False) -> subprocess.Popen:
    """`python -m fmbench ARGV` with the inference benchmark stubbed (and, with `kill`, killed after an epoch)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **({"KILL_AFTER_EPOCH": "1"} if kill else {})}
    return subprocess.Popen([sys.executable, "-c", WORKER, *map(str, argv)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen) -> tuple[int, str, str]:
    out, err = worker.communicate(timeout=600)
    return worker.returncode, out, err


@pytest.mark.slow      # two processes and four runs: 10-20 s on a busy 2-core machine
def test_two_processes_share_the_data_size_study_and_write_one_process_result(tmp_path, idx, alone):
    """Two processes given one journal file (as N machines are given one URL) and one --out: every
    planned run is trained once, by one of them, both work, and the result is one process's."""
    argv = [*STUDY, "--out", tmp_path / "ds", "--storage", tmp_path / "runs.journal", "--data-dir", idx,
            "--no-verify", "--no-download", "--device", "cpu"]
    results = [finish(w) for w in [start_worker(argv) for _ in range(2)]]
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err[-3000:]
        assert err.count("reusing the finished run") == PLANNED          # the result: from the run directories
    assert sum(err.count("training in") for _, _, err in results) == PLANNED
    done = once_each(trials_of(str(tmp_path / "runs.journal"), tmp_path), PLANNED)
    assert len({t.user_attrs["worker"] for t in done}) == 2
    for t in done:
        run = tmp_path / "ds" / "runs" / t.user_attrs["run_dir"]
        assert t.user_attrs["where"].endswith(str(run.resolve())) and (run / "summary.json").exists()
    assert same_result(read_json(tmp_path / "ds" / "data_size.json")) == same_result(alone)


@pytest.mark.slow      # two processes, one killed: 7-12 s on a busy 2-core machine
def test_a_killed_workers_run_is_taken_over_and_resumed(tmp_path, idx, alone):
    argv = [*STUDY, "--out", tmp_path / "ds", "--storage", tmp_path / "runs.journal", "--data-dir", idx,
            "--no-verify", "--no-download", "--device", "cpu"]
    doomed = start_worker(argv, kill=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "ds" / "runs").is_dir():        # it holds a run before the other starts
        assert doomed.poll() is None and time.monotonic() < deadline, doomed.communicate()[1][-3000:]
        time.sleep(0.2)
    other = start_worker(argv)
    code, _, err = finish(doomed)                       # reaped at once: a zombie would look alive
    assert code == -9, err[-3000:]
    code, _, err = finish(other)
    assert code == 0 and "Traceback" not in err, err[-3000:]
    trials = trials_of(str(tmp_path / "runs.journal"), tmp_path)
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    assert failed.user_attrs["worker"].endswith(f":{doomed.pid}")
    taken = once_each(trials, PLANNED)[failed.params["run"]]
    assert taken.user_attrs["worker"].endswith(f":{other.pid}")
    assert "its worker" in err and "died; the run is taken over" in err and "resuming the interrupted run" in err
    assert same_result(read_json(tmp_path / "ds" / "data_size.json")) == same_result(alone)


@pytest.mark.slow      # two spawned worker processes and a run alone: 20-27 s on a busy 2-core machine
def test_run_with_two_workers_trains_each_run_once_as_one_process_does(run_cli, idx, tmp_path, monkeypatch):
    """`fmbench run --workers 2`: two processes started here share OUT/study.journal; the report
    is written by the command, from the runs they made, as one process would make them."""
    common = ["run", "--models", "cnn_seed", "--seeds", "2", *[a for k, v in SETS.items() for a in ("--set", f"{k}={v}")],
              "--data-dir", idx, "--no-verify", "--no-download", "--device", "cpu"]
    code, _, err = run_cli(*common, "--out", tmp_path / "shared", "--workers", "2")
    assert code == 0, err
    assert err.count("reusing the finished run") == 2 and "training in" not in err    # the workers trained them
    assert "2 runs shared by 2 workers here, study run-" in err
    once_each(trials_of(None, tmp_path / "shared"), 2)
    assert (tmp_path / "shared" / "report.html").exists()

    stub_speed(monkeypatch)
    code, _, err = run_cli(*common, "--out", tmp_path / "alone")
    assert code == 0, err
    shared, one = (sorted((tmp_path / o / "runs").iterdir()) for o in ("shared", "alone"))
    assert [d.name for d in shared] == [d.name for d in one]
    for a, b in zip(shared, one):
        assert read_json(a / "eval.json")["splits"] == read_json(b / "eval.json")["splits"]
