"""`fmbench run` end to end: the study on a small real-data budget, reuse and resume of runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmbench.comparison import DEFAULT_STUDY, Entry, choose_entries, plan_runs

SECTIONS = ("1. What is compared", "2. Results", "3. Learning curves", "4. Errors by class",
            "5. Sample predictions", "6. Where each model looks", "7. Cost", "8. Is the difference real?",
            "9. Analysis")


def test_plan_runs_counts_seeds_up_from_the_preset(tmp_path: Path) -> None:
    planned = plan_runs([Entry("cnn_seed", "fast"), Entry("vit_seed", "fast")], {}, 3, tmp_path)
    assert [(rc.model, rc.train_cfg.seed) for _, rc, _ in planned] == [
        ("cnn_seed", 42), ("vit_seed", 42), ("cnn_seed", 43), ("vit_seed", 43), ("cnn_seed", 44), ("vit_seed", 44)]
    assert len({d for _, _, d in planned}) == 6


def test_default_study_trains_the_study_pair_fast_beside_the_shipped_strong_models(tmp_path: Path) -> None:
    entries = choose_entries(None, None, pretrained=False)
    assert entries == list(DEFAULT_STUDY)
    planned = plan_runs(entries, {}, 2, tmp_path)
    trained = [(e.model, rc.preset, rc.train_cfg.seed) for e, rc, _ in planned if rc is not None]
    assert trained == [("cnn_seed", "fast", 42), ("vit_seed", "fast", 42), ("cnn_seed", "fast", 43),
                       ("vit_seed", "fast", 43)]
    shipped = [(e.model, d.name) for e, rc, d in planned if rc is None]
    assert shipped == [("cnn_best", "cnn_best-pretrained"), ("vit_best", "vit_best-pretrained"),
                       ("hybrid_best", "hybrid_best-pretrained")]  # one run each


def test_pretrained_means_every_shipped_model_and_named_models_use_their_presets() -> None:
    assert [e.model for e in choose_entries(None, None, pretrained=True)] == [
        "cnn_seed", "vit_seed", "cnn_best", "vit_best", "hybrid_best"]
    assert choose_entries(["cnn_seed"], "seed", pretrained=False) == [Entry("cnn_seed", "seed")]
    assert choose_entries(None, "seed", pretrained=False) == [Entry("cnn_seed", "seed"), Entry("vit_seed", "seed")]


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--models", "cnn_seed,resnet999"], "unknown model 'resnet999'"),
    (["--set", "epochs=-1"], "epochs must be >= 1"),
    (["--preset", "nonsense"], "unknown preset 'nonsense'"),
    (["--pretrained", "--set", "epochs=2"], "--set, --precision and --seeds do not apply to --pretrained"),
    (["--pretrained", "--preset", "seed"], "--preset does not apply to --pretrained"),
    (["--pretrained", "--models", "cnn_best,vit_nope"], "unknown model 'vit_nope'"),
])
def test_run_rejects_bad_options(run_cli, tiny_idx_dir: Path, tmp_path: Path, argv, message) -> None:
    code, _, err = run_cli("run", *argv, "--out", tmp_path / "o", "--data-dir", tiny_idx_dir, "--no-verify")
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_end_to_end_on_real_data(run_cli, real_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ("run", "--models", "cnn_seed,vit_seed", "--out", out, "--data-dir", real_data_dir,
            "--set", "epochs=1", "--set", "train_size=1000")
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "report:" in stdout
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for section in SECTIONS:
        assert section in md and section in html
    assert "McNemar" in md
    runs = sorted((out / "runs").iterdir())
    assert [r.name.split("-")[0] for r in runs] == ["cnn_seed", "vit_seed"]
    for r in runs:
        summary = json.loads((r / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["epochs_run"] == 1
        ev = json.loads((r / "eval.json").read_text())
        assert ev["splits"]["test"]["n"] == 10_000  # the test set is always whole
        explained = json.loads((r / "explain.json").read_text())
        assert explained["deletion"]["n"] == 500 and explained["class_means_n"] == 10_000
    assert "Deletion AUC" in md and "figures/saliency_samples.png" in md

    # Run again: both runs are reused, nothing is trained.
    code, _, err = run_cli(*args)
    assert code == 0
    assert err.count("reusing the finished run") == 2 and "training cnn_seed" not in err

    # An interrupted run (no summary yet) is resumed rather than restarted.
    cnn = runs[0]
    (cnn / "summary.json").unlink()
    code, _, err = run_cli(*args)
    assert code == 0
    assert "resuming the interrupted run" in err and "reusing the finished run" in err


@pytest.mark.slow
def test_default_run_trains_the_study_pair_and_evaluates_the_strong_models(run_cli, make_tiny_idx,
                                                                            tmp_path: Path) -> None:
    data_dir = make_tiny_idx(tmp_path / "idx", n_train=200, n_test=50)
    out = tmp_path / "study"
    args = ("run", "--out", out, "--data-dir", data_dir, "--no-verify", "--set", "epochs=1",
            "--set", "batch_size=16", "--set", "threads=1")
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert [r.split("-")[:2] for r in runs] == [["cnn_best", "pretrained"], ["cnn_seed", "fast"],
                                                ["hybrid_best", "pretrained"], ["vit_best", "pretrained"],
                                                ["vit_seed", "fast"]]
    md = (out / "report.md").read_text()
    assert ("compare cnn_seed with vit_seed; cnn_best with vit_best; cnn_best with hybrid_best; "
            "hybrid_best with vit_best") in md
    assert "| Split | Loss (ours) | Loss (study) |" in md          # the study's figures beside ours
    code, _, err = run_cli(*args)                # again: everything is reused
    assert code == 0 and err.count("reusing") == 5 and "training" not in err


def test_other_data_never_reuses_resumes_or_compares_with_runs_of_this_data(run_cli, make_tiny_idx,
                                                                            tmp_path: Path) -> None:
    a = make_tiny_idx(tmp_path / "a", n_train=200, n_test=50, seed=0)
    b = make_tiny_idx(tmp_path / "b", n_train=200, n_test=50, seed=1)   # another IDX data set
    out = tmp_path / "study"
    common = ("run", "--models", "cnn_seed", "--out", out, "--no-verify", "--set", "epochs=1",
              "--set", "batch_size=16", "--set", "threads=1")
    code, _, err = run_cli(*common, "--data-dir", a)
    assert code == 0, err
    code, _, err = run_cli(*common, "--data-dir", b)
    assert code == 0, err
    assert "reusing" not in err and "training in" in err                # its own run, not a's
    run_a, run_b = sorted((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    key = lambda d: json.loads((d / "config.json").read_text())["data"]["key"]   # noqa: E731
    assert key(run_a) != key(run_b)

    (run_a / "summary.json").unlink()                                   # interrupted: resume it on b
    code, _, err = run_cli("train", "--resume", run_a, "--data-dir", b, "--no-verify")
    assert code == 2 and f"trained on data set idx (key {key(run_a)})" in err and key(run_b) in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
