"""`fmbench tune` (fmbench.tuning, fmbench.tune, the CLI): a search writes best.json and tune.md,
prunes, continues where it stopped, shares one storage between two processes, refuses bad input
with one line, and its recipe trains again (`fmbench train --recipe`). On a few hundred tiny
images whose class shows, so that the recipe moves the validation accuracy; seconds per test."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_idx
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import read_json, stub_speed

import fmbench
from fmbench import space as S
from fmbench import tuning as T
from fmbench.tuning import backend
from fmbench.data.idx import idx_bytes
from fmbench.errors import ConfigError
from fmbench.models import REGISTRY

optuna = pytest.importorskip("optuna", reason="optuna is a test dependency (pip install -e '.[test]')")

# 160 train images -> 120 train / 40 val; 2 epochs of 8 steps; one thread.
SETS = {"epochs": 2, "batch_size": 16, "val_fraction": 0.25, "precision": "fp32", "eval_batch_size": 256,
        "threads": 1}
SRC = Path(__file__).resolve().parents[1] / "src"


def write_learnable_idx(directory: Path, n_train: int = 160, n_test: int = 40) -> Path:
    """IDX files of noise with a bright 6x6 block whose place gives the class."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 120, size=(n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            r, col = 2 + 12 * (c // 5), 1 + 5 * (c % 5)
            images[i, r:r + 6, col:col + 6] = 255
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return directory


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    return write_learnable_idx(tmp_path_factory.mktemp("tune") / "idx")


@pytest.fixture(scope="module")
def data(idx):
    return load_idx(idx)


def tune(out: Path, data, **kw):
    return fmbench.tune("cnn_seed", out=out, data=data, device="cpu", quiet=True, **{**SETS, **kw})


def trials_of(out: Path, url: str | None = None) -> list:
    """The study in OUT/study.journal (or at `url`), its trials in number order."""
    storage = backend.open_storage(url, out)
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.fixture(scope="module")
def searched(tmp_path_factory, data):
    """A search of 2 trials, then the same search continued to 4, counting the runs trained."""
    out = tmp_path_factory.mktemp("search") / "s"
    from fmbench import runs

    trained = []
    with pytest.MonkeyPatch.context() as mp:
        stub_speed(mp)
        first = tune(out, data, trials=2)
        real = runs._train
        mp.setattr(runs, "_train", lambda spec, run_dir, *a, **k: trained.append(run_dir) or real(spec, run_dir, *a, **k))
        second = tune(out, data, trials=4)
    return type("Searched", (), dict(out=out, first=first, second=second, trained=trained))


# ---------------------------------------------------------------- a search

def test_a_search_writes_best_json_and_its_report(searched):
    best, out = read_json(searched.out / "best.json"), searched.out
    trials = trials_of(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    chosen = max(trials, key=lambda t: (t.value, -t.number))
    assert best["trial"] == chosen.number and best["value"] == chosen.value == searched.second.value
    assert best["model"] == "cnn_seed" and best["preset"] == "fast" and best["metric"] == "val_accuracy"
    # the recipe: the fixed settings (runtime ones left out) and the chosen trial's parameters
    assert best["overrides"] == {"epochs": "2", "batch_size": "16", "val_fraction": "0.25", "precision": "fp32",
                                 **chosen.params}
    assert set(chosen.params) == set(REGISTRY["cnn_seed"].space) - set(SETS)
    # selection on the validation split alone: only the chosen trial's run saw the test set, once
    for t in trials:
        run = out / t.user_attrs["run_dir"]
        splits = read_json(run / "eval.json")["splits"]
        assert t.value == splits["val"]["accuracy"]
        assert ("test" in splits) == (t.number == chosen.number)
        assert t.user_attrs["seconds"] > 0 and t.user_attrs["epochs"] == 2
    assert best["test_accuracy"] == read_json(out / best["run_dir"] / "summary.json")["test_accuracy"]
    report = (out / "tune.md").read_text()
    for section in ("1. The search", "2. Trials", "3. Best validation accuracy against wall time",
                    "4. Pruned trials", "5. Parameter importances"):
        assert f"## {section}" in report
    assert "None was pruned." in report and f"trial {chosen.number}, validation accuracy {chosen.value:.4f}" in report
    assert len({t.value for t in trials}) > 1, "the data should let the recipe move the accuracy"


def test_a_search_continues_to_its_trial_count_without_training_again(searched):
    trials = trials_of(searched.out)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert searched.trained == [searched.out / trials[n].user_attrs["run_dir"] for n in (2, 3)]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4


def test_the_recipe_trains_again_with_its_values(searched, run_cli, idx, tmp_path, monkeypatch, data):
    best_file = searched.out / "best.json"
    best = read_json(best_file)
    stub_speed(monkeypatch)
    # the recipe is the chosen trial: in its own directory the same run is found, nothing trained
    run = fmbench.train("cnn_seed", recipe=best_file, out=searched.out / best["run_dir"], data=data, device="cpu",
                        quiet=True, explain=False)
    assert run.evaluation["val"]["accuracy"] == best["value"]
    code, out, err = run_cli("train", "cnn_seed", "--recipe", best_file, "--set", "epochs=1", "--out", tmp_path / "r",
                             "--data-dir", idx, "--no-verify", "--no-download", "--device", "cpu")
    assert code == 0, err
    cfg = read_json(tmp_path / "r" / "config.json")["train_config"]
    assert cfg["epochs"] == 1                                             # --set on top of the recipe
    assert cfg["lr"] == best["overrides"]["lr"] and cfg["weight_decay"] == best["overrides"]["weight_decay"]
    assert read_json(tmp_path / "r" / "config.json")["model_config"]["dropout"] == best["overrides"]["dropout"]


def test_a_pruned_trial_stops_and_is_reported(tmp_path, data, monkeypatch):
    stub_speed(monkeypatch)
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
    tuned = tune(tmp_path / "p", data, trials=3, storage=f"sqlite:///{tmp_path}/study.db")   # a database too
    trials = tuned.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert trials[1].last_step == 1 and list(trials[1].intermediate_values) == [1]
    assert len((tmp_path / "p" / trials[1].user_attrs["run_dir"] / "metrics.jsonl").read_text().splitlines()) == 1
    assert tuned.recipe["trial"] != 1
    report = (tmp_path / "p" / "tune.md").read_text()
    assert f"| 1 | 1 | {trials[1].intermediate_values[1]:.4f} | below the pruner's bar |" in report


def test_an_interrupted_trial_resumes_where_it_stopped(tmp_path, data, monkeypatch):
    from helpers_engine import interrupt_in_epoch

    stub_speed(monkeypatch)
    with monkeypatch.context() as mp:
        interrupt_in_epoch(mp, 4)                  # trial 1, after its first epoch's checkpoint
        with pytest.raises(KeyboardInterrupt):
            tune(tmp_path / "i", data, trials=3)
    tune(tmp_path / "i", data, trials=3)
    trials = trials_of(tmp_path / "i")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)
    assert retry.number == 2 and retry.params == trials[1].params
    assert retry.user_attrs["run_dir"] == trials[1].user_attrs["run_dir"]
    assert retry.user_attrs["epochs"] == 2 and retry.value == read_json(
        tmp_path / "i" / retry.user_attrs["run_dir"] / "eval.json")["splits"]["val"]["accuracy"]


def test_a_budget_counts_the_search_time_over_interruptions(tmp_path, data, monkeypatch):
    stub_speed(monkeypatch)
    first = tune(tmp_path / "b", data, budget=0.01)           # the trial started within it finishes
    assert len(first.study.trials) == 1 and first.study.user_attrs["elapsed_s"] >= 0.01
    again = tune(tmp_path / "b", data, budget="0.01s")        # spent already: the same search, no new trial
    assert len(again.study.trials) == 1 and again.recipe == first.recipe


# ---------------------------------------------------------------- several workers

WORKER = ("import sys, fmbench.runs as r; "
          "r.measure_inference = lambda *a, **k: {'infer_images_per_s': 1.0, 'latency_ms': 1.0}; "
          "from fmbench.cli import main; sys.exit(main(sys.argv[1:]))")


# A PostgreSQL server where the test may create (and then drops) a database of its own, e.g.
# postgresql://me@127.0.0.1:5432/postgres; without it the PostgreSQL case is skipped.
POSTGRES = os.environ.get("FMBENCH_TEST_POSTGRES", "")


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def shared_storage(request, tmp_path):
    """The --storage URL two workers share (None: the default journal file in --out)."""
    if request.param == "journal":
        yield None
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
    else:
        if not POSTGRES:
            pytest.skip("set FMBENCH_TEST_POSTGRES to a PostgreSQL server's URL to run this case")
        import sqlalchemy

        server = sqlalchemy.engine.make_url(POSTGRES)
        name = f"fmbench_test_{os.getpid()}_{tmp_path.name}".lower().replace("-", "_")[:60]
        admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.mark.slow      # two processes and a 6-trial search alone: about 20 s on a busy 2-core machine
def test_two_workers_share_one_storage_and_choose_as_one_worker(tmp_path, idx, data, monkeypatch, shared_storage):
    """Two processes, one storage (a journal file, SQLite, PostgreSQL), 6 trials: each trial runs
    once, and the choice is one worker's.
    Same choice because each trial's draws depend on (seed, trial number) alone in a search this
    short (TPE samples its first 10 trials at random) and training on one thread is deterministic;
    no pruner, since the median of whichever trials finished first would depend on timing.
    (`fmbench.cli.main` as `python -m fmbench` runs it, with the inference benchmark stubbed.)"""
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    argv = ["tune", "cnn_seed", "--trials", "6", "--pruner", "none", "--out", str(tmp_path / "shared"), *sets,
            "--data-dir", str(idx), "--no-verify", "--no-download", "--device", "cpu",
            *(["--storage", shared_storage] if shared_storage else [])]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, *argv], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(w.wait(timeout=300), *w.communicate()) for w in workers]
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, err[-2000:]
    trials = [t for t in trials_of(tmp_path / "shared", shared_storage) if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6              # none ran twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2                            # both worked
    shared = read_json(tmp_path / "shared" / "best.json")
    assert shared["test_accuracy"] is not None            # the last worker to finish evaluated it

    stub_speed(monkeypatch)
    alone = tune(tmp_path / "alone", data, trials=6, pruner="none")
    for key in ("trial", "overrides", "value", "test_accuracy"):
        assert shared[key] == alone.recipe[key], key


# ---------------------------------------------------------------- bad input: one line, exit 2

def _recipe_of_another_model(tmp_path: Path) -> Path:
    path = tmp_path / "vit.json"
    path.write_text(json.dumps({"model": "vit_seed", "preset": "fast", "overrides": {"lr": 1e-3}}))
    return path


BAD = {
    "unknown storage scheme": (["--storage", "redis://localhost/0"], "unknown scheme 'redis'"),
    "unreachable database": (["--storage", "sqlite:////nonexistent-dir/study.db"], "cannot reach the database"),
    # no server listens on port 9 (or no driver is installed): one line either way
    "unreachable server": (["--storage", "postgresql://me@127.0.0.1:9/fmbench"], "--storage postgresql://"),
    "a space key the model lacks": (["--space", "depth=2..4"], "search space key 'depth' is not a setting of cnn_seed"),
    "a bad range": (["--space", "lr=fast"], "--space lr=fast: expected"),
    "a range the model refuses": (["--space", "dropout=0.0..2.0"], "search space dropout 0.0..2.0: dropout"),
    "a budget of 0": (["--budget", "0"], "--budget must be more than 0"),
    "a negative budget": (["--budget=-5m"], "--budget must be more than 0"),
    "a budget that is no duration": (["--budget", "soon"], "expected a duration"),
    "no end": ([], "--trials N, --budget DURATION"),
    "no trials": (["--trials", "0"], "--trials must be >= 1"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, run_cli, idx, tmp_path):
    extra, message = BAD[case]
    trials = [] if case in ("no end", "no trials") or "budget" in case else ["--trials", "1"]
    code, out, err = run_cli("tune", "cnn_seed", *trials, *extra, "--out", tmp_path / "t", "--data-dir", idx,
                             "--no-verify", "--no-download", "--device", "cpu")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("fmbench: error: ") and message in err, err


def test_a_recipe_of_another_model_is_refused(run_cli, tmp_path, idx):
    code, _, err = run_cli("train", "cnn_seed", "--recipe", _recipe_of_another_model(tmp_path), "--data-dir", idx,
                           "--no-verify", "--no-download")
    assert code == 2 and len(err.splitlines()) == 1 and "is a recipe for vit_seed, not cnn_seed" in err
    with pytest.raises(ConfigError, match="recipe for vit_seed"):
        fmbench.train("cnn_seed", recipe=_recipe_of_another_model(tmp_path), data=object())


def test_without_optuna_tune_says_how_to_install_it_and_recipes_still_read(run_cli, searched, monkeypatch, idx):
    monkeypatch.setitem(sys.modules, "optuna", None)      # `import optuna` raises ImportError
    code, _, err = run_cli("tune", "cnn_seed", "--trials", "1", "--data-dir", idx, "--no-verify", "--no-download")
    assert code == 2 and err == "fmbench: error: fmbench tune needs Optuna: pip install 'fmbench[tune]'\n"
    from fmbench.tuning.recipe import read_recipe

    assert read_recipe(searched.out / "best.json", "cnn_seed")[1] == "fast"


def test_a_directory_holding_another_search_is_refused(run_cli, searched, idx):
    code, _, err = run_cli("tune", "cnn_seed", "--trials", "1", "--seed", "7", "--out", searched.out,
                           *[a for k, v in SETS.items() for a in ("--set", f"{k}={v}")],
                           "--data-dir", idx, "--no-verify", "--no-download", "--device", "cpu")
    assert code == 2 and "Traceback" not in err       # after the data's progress line, the error's one line
    assert err.splitlines()[-1].startswith("fmbench: error: ") and "holds another search" in err.splitlines()[-1]


# ---------------------------------------------------------------- spaces, budgets

@pytest.mark.parametrize("model", REGISTRY)
def test_every_model_declares_a_valid_search_space(model):
    space = REGISTRY[model].space
    assert {"lr", "weight_decay", "warmup_epochs", "label_smoothing", "batch_size", "epochs"} <= set(space)
    assert T.plan_search(model).space == space          # every end of every range is a valid setting
    for key, p in space.items():
        assert S.parse(key, str(p)) == p                # what `fmbench models` shows is `--space` syntax


def test_models_shows_each_search_space(run_cli):
    code, out, _ = run_cli("models")
    assert code == 0
    for spec in REGISTRY.values():
        assert f"    search: {S.describe(spec.space)}" in out.splitlines()


def test_space_syntax():
    assert S.parse("lr", "1e-4..1e-2:log") == S.Float(1e-4, 1e-2, log=True)
    assert S.parse("epochs", "2..6") == S.Int(2, 6)
    assert S.parse("dropout", "0..0.5") == S.Float(0.0, 0.5)
    assert S.parse("batch_size", "128|256") == S.Choice((128, 256))
    for bad in ("1..", "3..1", "a|a", "1..2:ln", "0..1:log"):
        with pytest.raises(ConfigError):
            S.parse("x", bad)


def test_budget_units():
    assert [T.parse_budget(b) for b in ("90s", "20m", "1.5h", "45", 30, None)] == [90, 1200, 5400, 45, 30, None]


def test_two_workers_creating_a_new_databases_tables_at_once_retry(monkeypatch, tmp_path):
    """The loser of the race to create a new database's tables (a duplicate alembic_version row)
    tries again instead of failing; an unreachable database is still one line at the first try."""
    import sqlalchemy

    calls = []
    real = optuna.storages.RDBStorage

    @functools.wraps(real)   # keeps RDBStorage's signature, which open_storage reads for the callback's name
    def racing(url, **kw):
        calls.append(url)
        if url.endswith("new.db") and len(calls) == 1:
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception(
                "UNIQUE constraint failed: alembic_version.version_num"))
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(backend.time, "sleep", lambda s: None)
    backend.open_storage(f"sqlite:///{tmp_path / 'new.db'}", tmp_path)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(ConfigError, match="cannot reach the database"):
        backend.open_storage("sqlite:////nonexistent-dir/study.db", tmp_path)
    assert len(calls) == 1


def test_a_surplus_trial_from_racing_workers_is_not_logged_with_a_traceback():
    """Two workers may ask for the Nth trial at once; the loser's trial is refused (_Surplus), which
    Optuna would log with a traceback: the filter run_search installs drops that record only."""
    import logging

    from fmbench.tuning import _QuietSurplus, _Surplus

    def record(exc):
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, "Trial 6 failed", None,
                                 (type(exc), exc, None) if exc else None)

    quiet = _QuietSurplus()
    assert not quiet.filter(record(_Surplus("the search already has its 6 trials")))
    assert quiet.filter(record(ValueError("a real failure"))) and quiet.filter(record(None))
