"""`fmbench study equal-budget` (fmbench.studies.equal_budget, fmbench.study_equal_budget) and
`fmbench run --recipe`: each model searched for the same budget, its chosen recipe trained on the
full training set with several seeds, the report stating what each search spent; a re-run trains
nothing again; bad input gets one line. On the tiny learnable images of test_tune."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_idx
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import read_json, stub_speed
from test_tune import SETS, write_learnable_idx

import fmbench
from fmbench.errors import ConfigError

pytest.importorskip("optuna", reason="optuna is a test dependency (pip install -e '.[test]')")

# the searches see 60 of the 120 training images; the final runs all 120
STUDY_SETS = {**SETS, "epochs": 1, "train_size": 60}


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    return write_learnable_idx(tmp_path_factory.mktemp("budget") / "idx")


@pytest.fixture(scope="module")
def data(idx):
    return load_idx(idx)


@pytest.fixture(scope="module")
def studied(tmp_path_factory, data):
    """A study of both study models with a 1-second budget (a trial or two each: the trial started
    before the budget ran out finishes) and 2 seeds; then the same call again, counting training."""
    from fmbench import runs

    out, trained = tmp_path_factory.mktemp("equal") / "eb", []
    with pytest.MonkeyPatch.context() as mp:
        stub_speed(mp)
        report = fmbench.study_equal_budget(("cnn_seed", "vit_seed"), "1s", seeds=2, out=out, data=data,
                                            device="cpu", quiet=True, **STUDY_SETS)
        real = runs._train
        mp.setattr(runs, "_train", lambda spec, run_dir, *a, **k: trained.append(run_dir) or real(spec, run_dir, *a, **k))
        again = fmbench.study_equal_budget(("cnn_seed", "vit_seed"), "1s", seeds=2, out=out, data=data,
                                           device="cpu", quiet=True, **STUDY_SETS)
    return type("Studied", (), dict(out=out, report=report, again=again, trained=trained))


def test_each_model_gets_the_same_budget_and_its_chosen_recipe_trains_on_all_images(studied):
    result = read_json(studied.out / "equal_budget.json")
    assert result["kind"] == "equal-budget" and result["budget_s"] == 1.0 and result["seeds"] == 2
    assert [m["model"] for m in result["models"]] == ["cnn_seed", "vit_seed"]
    runs_dir = studied.out / "runs"
    for m in result["models"]:
        best = read_json(studied.out / m["search_dir"] / "best.json")
        assert m["trials"] >= 1 and m["complete"] + m["pruned"] + m["fail"] == m["trials"]
        assert m["elapsed_s"] >= 1.0 and m["best_val_accuracy"] == best["value"]
        assert m["fixed"]["train_size"] == "60" and "train_size" not in m["final"]
        assert m["chosen"] == {k: v for k, v in best["overrides"].items() if k in m["space"]}
        finals = sorted(d for d in runs_dir.iterdir() if d.name.startswith(m["model"]))
        assert len(finals) == 2                                      # two seeds
        configs = [read_json(d / "config.json") for d in finals]
        assert [c["train_config"]["seed"] for c in configs] == [42, 43]
        for c in configs:
            assert c["train_config"]["train_size"] == 0              # the full training set
            for k, v in m["chosen"].items():                        # the chosen recipe's values
                cfg = {**c["train_config"], **c["model_config"]}
                assert str(cfg[k]) == str(v) or float(cfg[k]) == pytest.approx(float(v))


def test_the_report_states_each_search_beside_the_final_runs(studied):
    assert studied.report == studied.out / "report.html"
    md = (studied.out / "report.md").read_text()
    assert "An equal search budget" in md and "0 min" in md       # a 1-second budget, rounded
    assert "fixed train_size" in md and "the full training set" in md
    for m in read_json(studied.out / "equal_budget.json")["models"]:
        assert f"| {m['model']} |" in md and f"{m['search_dir']}/tune.md" in md
    assert "cnn_seed" in md and "vit_seed" in md and "Results on train, validation and test" in md


def test_the_same_call_again_trains_nothing(studied):
    assert studied.again == studied.report and studied.trained == []


def test_run_trains_a_searchs_recipe_with_several_seeds(studied, data, tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    best = studied.out / "search" / "cnn_seed" / "best.json"
    report = fmbench.run_study(recipes=[best], seeds=2, out=tmp_path / "r", data=data, device="cpu", quiet=True,
                               threads=1)
    configs = [read_json(d / "config.json") for d in sorted((tmp_path / "r" / "runs").iterdir())]
    assert report is not None and [c["model"] for c in configs] == ["cnn_seed", "cnn_seed"]
    recipe = {k: str(v) for k, v in read_json(best)["overrides"].items()}   # as --set text
    assert [c["overrides"] for c in configs] == [{**recipe, **({"seed": 43} if i else {}), "threads": "1"}
                                                 for i in range(2)]


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0"], "fmbench: error: --budget must be more than 0, got 0\n"),
    (["--budget", "soon"], "fmbench: error: --budget soon: expected a duration such as 90s, 20m or 1.5h\n"),
    (["--budget", "1m", "--seeds", "0"], "fmbench: error: --seeds must be >= 1, got 0\n"),
    (["--budget", "1m", "--models", "cnn_seed,cnn_seed"],
     "fmbench: error: --models names a model twice: cnn_seed,cnn_seed\n"),
    (["--budget", "1m", "--models", "resnet"], "fmbench: error: unknown model 'resnet'"),
    (["--budget", "1m", "--space-typo"], "fmbench: error: unrecognized arguments: --space-typo"),
])
def test_bad_input_gets_one_line_and_exit_2(run_cli, idx, tmp_path, argv, message):
    code, _, err = run_cli("study", "equal-budget", *argv, "--out", tmp_path / "o", "--data-dir", idx, "--no-verify",
                           "--no-download")
    assert code == 2 and err.startswith(message.rstrip("\n")) and err.count("\n") <= 1 + ("usage" in err) * 2
    assert not (tmp_path / "o").exists()


def test_run_refuses_a_recipe_with_pretrained_or_a_file_that_is_no_recipe(run_cli, studied, idx, tmp_path):
    best = studied.out / "search" / "cnn_seed" / "best.json"
    code, _, err = run_cli("run", "--recipe", best, "--pretrained", "--data-dir", idx)
    assert code == 2 and err == "fmbench: error: --recipe does not apply to --pretrained (the shipped weights are " \
                                "evaluated)\n"
    code, _, err = run_cli("run", "--recipe", studied.out / "equal_budget.json", "--data-dir", idx)
    assert code == 2 and "not a recipe" in err and err.count("\n") == 1


def test_plan_checks_before_any_data_loads():
    from fmbench.studies import equal_budget

    with pytest.raises(ConfigError, match="--budget is required"):
        equal_budget.plan(["cnn_seed"], None, None, 1, {})
    searches, seconds = equal_budget.plan(["cnn_seed", "vit_seed"], None, "20m", 3, {"train_size": "10000"})
    assert seconds == 1200 and [s.model for s in searches] == ["cnn_seed", "vit_seed"]
    assert all(s.fixed == {"train_size": "10000"} for s in searches)
