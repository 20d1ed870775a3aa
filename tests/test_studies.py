"""The data-size and robustness studies: subsets, budgets, results, reports, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from report_fixtures import write_run

from fmbench.data.batches import stratified_subset
from fmbench.errors import ConfigError
from fmbench.studies import data_size, robustness
from fmbench.spec import make_spec as make_config

TINY = ("--data-dir", "{data}", "--no-verify", "--no-download", "--device", "cpu")


def _args(data_dir: Path, *args: str) -> list[str]:
    return [*args, *(a.format(data=data_dir) for a in TINY)]


def test_subsets_are_stratified_and_nested_per_seed():
    labels = torch.arange(5400) % 10
    idx = torch.arange(5400)
    small, large = stratified_subset(idx, labels, 1000, 7), stratified_subset(idx, labels, 2000, 7)
    assert len(small) == 1000 and len(large) == 2000
    assert torch.bincount(labels[small]).tolist() == [100] * 10
    assert set(small.tolist()) <= set(large.tolist())                   # nested
    assert set(stratified_subset(idx, labels, 1000, 8).tolist()) != set(small.tolist())


def test_small_training_sets_get_at_least_the_steps_of_10000_images():
    rc = make_config("cnn_seed", "fast", {"epochs": "6"})                # 6 epochs, batch 256
    steps_at_10k = 6 * 40
    assert data_size.epochs_for(rc, 54_000) == 6
    assert data_size.epochs_for(rc, 10_000) == 6
    assert data_size.epochs_for(rc, 1000) == steps_at_10k // 4          # 4 steps per epoch
    assert data_size.epochs_for(rc, 1000) * 4 >= steps_at_10k


@pytest.mark.parametrize("text, message", [
    ("1000,x", "give whole numbers"), ("5,1000", "at least 10"),
])
def test_bad_sizes(text, message):
    with pytest.raises(ConfigError, match=message):
        data_size.parse_sizes(text)


@pytest.mark.parametrize("text, expected", [("1-5", [1, 2, 3, 4, 5]), ("3", [3]), ("5,1,3", [1, 3, 5])])
def test_severity_ranges(text, expected):
    assert robustness.parse_severities(text) == expected


@pytest.mark.slow
def test_data_size_study_end_to_end_on_tiny_data(run_cli, tiny_idx_dir, tmp_path):
    out = tmp_path / "ds"
    argv = _args(tiny_idx_dir, "study", "data-size", "--models", "cnn_seed,vit_seed", "--sizes", "20,30",
                 "--seeds", "2", "--set", "batch_size=8", "--set", "epochs=1", "--set", "threads=1",
                 "--set", "val_fraction=0.25", "--out", str(out))
    code, stdout, err = run_cli(*argv)
    assert code == 0, err
    result = json.loads((out / "data_size.json").read_text())
    assert result["sizes"] == [20, 30] and len(result["seeds"]) == 2
    for label in ("cnn_seed", "vit_seed"):
        for size in ("20", "30"):
            runs = result["models"][label][size]
            assert len(runs) == 2 and all(0 <= r["test_accuracy"] <= 1 for r in runs)
    assert len(result["mcnemar"]["cnn_seed|vit_seed"]) == 2
    md = (out / "report.md").read_text()
    assert "Data efficiency" in md and "comes within 1 point" in md and (out / "figures" / "data_size.png").exists()
    code, _, err = run_cli(*argv)                                        # everything is reused
    assert code == 0 and err.count("reusing the finished run") == 8


def test_a_size_larger_than_the_training_set_is_refused(run_cli, tiny_idx_dir, tmp_path):
    code, _, err = run_cli(*_args(tiny_idx_dir, "study", "data-size", "--sizes", "20,100", "--out", str(tmp_path)))
    assert code == 2 and "100 is larger than the 36 training images" in err and "Traceback" not in err


def test_robustness_study_on_shipped_weights(run_cli, tiny_idx_dir, tmp_path):
    out = tmp_path / "rb"
    code, stdout, err = run_cli(*_args(tiny_idx_dir, "study", "robustness", "--weights", "cnn_seed,vit_seed",
                                       "--corruptions", "rotate,invert", "--severities", "1-2", "--images", "all",
                                       "--out", str(out)))
    assert code == 0, err
    result = json.loads((out / "robustness.json").read_text())
    assert result["n_images"] == 20 and result["corruptions"] == ["rotate", "invert"] and result["severities"] == [1, 2]
    for m in result["models"]:
        assert len(m["clean_predictions"]) == 20
        assert [len(p) for p in m["predictions"]["rotate"]] == [20, 20]
    assert len(result["examples"]["images"]) == 2 and len(result["examples"]["images"][0]) == 3
    md = (out / "report.md").read_text()
    assert "Robustness to corruptions" in md and "mCE" in md and "cnn_seed (CNN) vs vit_seed (ViT)" in md
    assert {p.name for p in (out / "figures").iterdir()} == {"robustness_heatmap.png", "corruption_examples.png"}


@pytest.mark.parametrize("args, message", [
    (("--corruptions", "fog"), "unknown corruption 'fog'"),
    (("--severities", "0-3"), "severities run from 1 to 5"),
    (("--severities", "x"), "give a range like 1-5"),
    (("--images", "0"), "--images must be >= 1"),
    (("--images", "many"), "give a whole number or 'all'"),
    (("--baseline", "resnet"), "--baseline 'resnet' is not one of the models"),
    (("--weights", "nope"), "'nope' is neither shipped weights"),
])
def test_robustness_bad_input_is_one_line_and_exit_2(run_cli, tiny_idx_dir, tmp_path, args, message):
    code, _, err = run_cli(*_args(tiny_idx_dir, "study", "robustness", *args, "--out", str(tmp_path / "o")))
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_robustness_refuses_a_run_trained_on_other_data(run_cli, make_tiny_idx, tmp_path):
    a, b = make_tiny_idx(tmp_path / "a", seed=1), make_tiny_idx(tmp_path / "b", seed=2)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(*_args(a, "train", "cnn_seed", "--set", "epochs=1", "--set", "batch_size=8",
                                  "--set", "val_fraction=0.25", "--out", str(run_dir)))
    assert code == 0, err
    code, _, err = run_cli(*_args(b, "study", "robustness", str(run_dir), "--corruptions", "rotate",
                                  "--severities", "1", "--images", "all", "--out", str(tmp_path / "o")))
    assert code == 2 and "this run was trained on data set" in err


def test_compare_adds_a_study_section_to_the_main_report(run_cli, tmp_path):
    runs = [write_run(tmp_path, m, n=60, accuracy=a) for m, a in (("cnn_seed", 0.9), ("vit_seed", 0.8))]
    study = tmp_path / "rb"
    study.mkdir()
    labels = json.loads(json.dumps(__import__("report_fixtures").shared_labels(60).tolist()))
    preds = lambda shift: [(y + shift) % 10 if i % 3 == 0 else y for i, y in enumerate(labels)]  # noqa: E731
    result = {"kind": "robustness", "test_hash": "testhash-synthetic", "seed": 0, "n_images": 60,
              "test_indices": list(range(60)), "labels": labels, "corruptions": ["rotate"], "severities": [1, 2],
              "parameters": {"rotate": [10, 20]}, "seconds": 1.0,
              "models": [{"label": m, "model": m, "source": "run", "precision": "fp32", "clean_predictions": labels,
                          "predictions": {"rotate": [preds(1), preds(2)]}} for m in ("cnn_seed", "vit_seed")]}
    (study / "robustness.json").write_text(json.dumps(result))
    code, _, err = run_cli("compare", *runs, study, "--out", tmp_path / "report", "--no-images")
    assert code == 0, err
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Robustness to corruptions" in md
    result["test_hash"] = "other"
    (study / "robustness.json").write_text(json.dumps(result))
    code, _, err = run_cli("compare", *runs, study, "--out", tmp_path / "report", "--no-images")
    assert code == 2 and "the study was run on other test data" in err


def test_robustness_subjects_name_runs_by_folder_only_when_labels_clash(monkeypatch):
    from types import SimpleNamespace

    from fmbench.studies import robustness

    rc = SimpleNamespace(model="cnn_seed", train_cfg=SimpleNamespace(precision="fp32"))
    other = SimpleNamespace(model="vit_seed", train_cfg=SimpleNamespace(precision="fp32"))
    loaded = [(Path("runs/a"), "m1", rc), (Path("runs/b"), "m2", other), ("cnn_seed", "m3", rc)]
    monkeypatch.setattr("fmbench.runs.load_models", lambda run_dirs, names, device: iter(loaded))
    subjects = robustness.subjects([Path("runs/a"), Path("runs/b")], ["cnn_seed"], torch.device("cpu"))
    assert [(s.label, s.source) for s in subjects] == [
        ("cnn_seed (a)", "run runs/a"), ("vit_seed", "run runs/b"), ("cnn_seed", "shipped cnn_seed")]
