"""A run's life (fmbench.runs) and identity (fmbench.spec): plan, reuse, one writer, format 1 upgraded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import fmbench
from fmbench import rundir as R
from fmbench import runs
from fmbench.errors import ConfigError, RunDirError
from fmbench.fileio import writer_lock
from fmbench.spec import make_spec, read_spec

from conftest import write_tiny_idx
from helpers_engine import FAST, stub_speed, tiny_dataset, tiny_preset

V1_RUN = Path(__file__).parent / "fixtures" / "run-v1"   # written by fmbench at commit 96c2cce (format 1)


def _spec(**over):
    return make_spec("cnn_seed", tiny_preset("cnn_seed"), {**FAST, **over})


@pytest.mark.parametrize("runtime", [{"threads": "2"}, {"threads": "0"}, {"eval_batch_size": "128"},
                                     {"compile": "true"}, {"channels_last": "false"}])
def test_runtime_settings_do_not_change_the_identity(runtime):
    data = tiny_dataset()
    base = _spec().on(data, "cpu")
    other = _spec(**runtime).on(data, "cpu")
    assert other.hash == base.hash and runs.run_dir_for(other) == runs.run_dir_for(base)
    assert other.train_cfg != base.train_cfg      # recorded all the same


@pytest.mark.parametrize("change", [{"lr": "0.5"}, {"seed": "7"}, {"precision": "bf16"}, {"train_size": "20"}])
def test_what_changes_the_result_changes_the_identity(change):
    data = tiny_dataset()
    assert _spec(**change).on(data, "cpu").hash != _spec().on(data, "cpu").hash


def test_the_device_type_and_the_data_are_part_of_the_identity():
    spec = _spec().on(tiny_dataset(), "cpu")
    assert spec.device == "cpu" and spec.data["test_hash"] == tiny_dataset().test_hash
    assert spec.hash != spec.__class__(**{**spec.__dict__, "device": "cuda"}).hash
    assert spec.hash != _spec().on(tiny_dataset(seed=1), "cpu").hash


def test_a_run_trained_with_two_threads_is_reused_with_one(tmp_path, monkeypatch, capsys):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    two = _spec(threads="2").on(data, "cpu")
    run_dir = runs.execute(two, runs.run_dir_for(two, tmp_path), data, "cpu", explain=False)
    before = (run_dir / R.SUMMARY).read_bytes()
    capsys.readouterr()
    one = _spec(threads="1").on(data, "cpu")
    assert runs.plan(one, run_dir) == "reuse"
    runs.execute(one, runs.run_dir_for(one, tmp_path), data, "cpu", explain=False)
    assert "reusing the finished run" in capsys.readouterr().err
    assert (run_dir / R.SUMMARY).read_bytes() == before
    assert json.loads((run_dir / R.CONFIG).read_text())["train_config"]["threads"] == 2   # as it was trained


def test_the_run_directory_records_family_tier_device_and_data(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    spec = make_spec("vit_seed", tiny_preset("vit_seed"), FAST).on(data, "cpu")
    run_dir = runs.execute(spec, tmp_path / "run", data, "cpu", explain=False)
    raw = json.loads((run_dir / R.CONFIG).read_text())
    assert raw["format_version"] == R.FORMAT_VERSION == 2
    assert (raw["family"], raw["tier"], raw["device"]) == ("vit", "study", "cpu")
    assert raw["data"] == data.identity and set(raw["data"]) == set(R.DATA_KEYS)
    assert raw["config_hash"] == spec.hash == read_spec(run_dir).hash


def test_a_directory_holding_another_run_is_refused(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    run_dir = runs.execute(_spec().on(data, "cpu"), tmp_path / "run", data, "cpu", explain=False)
    with pytest.raises(ConfigError, match="holds another run"):
        runs.execute(_spec(lr="0.5").on(data, "cpu"), run_dir, data, "cpu")


def test_a_second_writer_of_a_trained_run_is_refused(tmp_path):
    data = tiny_dataset()
    run_dir = tmp_path / "run"
    with writer_lock(run_dir):                   # another process is training here
        with pytest.raises(RunDirError, match="is being written by"):
            runs.execute(_spec().on(data, "cpu"), run_dir, data, "cpu")
    assert not (run_dir / R.CONFIG).exists()


def test_a_second_writer_of_a_shipped_evaluation_is_refused(tmp_path):
    data = tiny_dataset()
    run_dir = runs.shipped_run_dir("cnn_seed", tmp_path)
    with writer_lock(run_dir):                   # another process is evaluating these weights here
        with pytest.raises(RunDirError, match="is being written by"):
            runs.evaluate_shipped("cnn_seed", run_dir, data, "cpu")
    assert not (run_dir / R.CONFIG).exists()


# ------------------------------------------------------------------ format version 1

def test_a_format_1_run_directory_loads(tmp_path):
    run_dir = shutil.copytree(V1_RUN, tmp_path / "run-v1")
    assert json.loads((run_dir / R.CONFIG).read_text())["format_version"] == 1
    run = fmbench.load_run(run_dir)
    spec = run.config
    assert (spec.model, spec.family, spec.tier, spec.device) == ("vit_seed", "vit", "study", "cpu")
    assert spec.data["test_hash"] == run.summary["test_hash"]
    raw = R.read_config(run_dir)
    assert raw["format_version"] == R.FORMAT_VERSION and (raw["family"], raw["tier"]) == ("vit", "study")
    assert json.loads((run_dir / R.CONFIG).read_text())["format_version"] == 1   # read, never rewritten
    # the model it trained reproduces its own recorded test accuracy on the same (tiny) data
    data = fmbench.load_data(write_tiny_idx(tmp_path / "idx"), verify=False, download=False,
                             cache_dir=tmp_path / "cache")
    assert data.identity["key"] == spec.data["key"]
    metrics = fmbench.evaluate(run, data, device="cpu")
    assert metrics["accuracy"] == pytest.approx(run.test_accuracy)
    assert isinstance(run.model()(torch.zeros(1, 1, 28, 28)), torch.Tensor)


def test_a_format_1_config_naming_a_model_format_1_never_held_is_one_line(tmp_path):
    """Version 1's family and tier come from the four models it knew, not today's registry."""
    assert set(R.V1_MODELS) == {"cnn_seed", "vit_seed", "cnn_best", "vit_best"}
    run_dir = shutil.copytree(V1_RUN, tmp_path / "run-v1")
    config = json.loads((run_dir / R.CONFIG).read_text())
    (run_dir / R.CONFIG).write_text(json.dumps({**config, "model": "hybrid_best"}))
    with pytest.raises(RunDirError, match=r"config.json: model 'hybrid_best' is no version-1 model"):
        R.read_config(run_dir)


def test_a_format_1_run_trained_on_two_threads_is_reused_by_its_spec_today(tmp_path):
    run_dir = shutil.copytree(V1_RUN, tmp_path / "run-v1")
    held = read_spec(run_dir)
    assert held.train_cfg.threads == 1
    today = make_spec(held.model, held.preset, {**held.overrides, "threads": "4"})
    today = today.__class__(**{**today.__dict__, "data": held.data, "device": "cpu"})
    assert runs.plan(today, run_dir) == "reuse"


def test_the_report_reads_family_and_tier_from_the_run_directory(tmp_path):
    from fmbench.report.runs import load_run
    from fmbench.report.tiers import run_family_tier

    run_dir = shutil.copytree(V1_RUN, tmp_path / "run-v1")
    config = json.loads((run_dir / R.CONFIG).read_text())
    config.update(format_version=2, family="cnn", tier="strong", device="cpu",
                  data={**config["data"], "test_hash": "x"})
    (run_dir / R.CONFIG).write_text(json.dumps(config))
    assert run_family_tier(load_run(run_dir)) == ("cnn", "strong")     # what it recorded, not the registry's


# ------------------------------------------------------------------ messages

def test_messages_go_through_logging_and_the_cli_sets_how_much(run_cli, tiny_idx_dir, tmp_path, capsys):
    import logging

    root = logging.getLogger("fmbench")
    try:
        fmbench.load_data(tiny_idx_dir, verify=False, download=False, cache_dir=tmp_path / "a", quiet=True)
        assert capsys.readouterr().err == ""
        fmbench.load_data(tiny_idx_dir, verify=False, download=False, cache_dir=tmp_path / "b", quiet=False)
        assert "parsed (not verified) the 4 IDX files" in capsys.readouterr().err
        for flag, level in (("-q", logging.WARNING), ("-v", logging.DEBUG), (None, logging.INFO)):
            assert run_cli(*([flag] if flag else []), "models")[0] == 0
            assert root.level == level
        code, _, err = run_cli("-q", "data", "--data-dir", tiny_idx_dir, "--no-verify", "--no-download",
                               "--cache-dir", tmp_path / "c")
        assert code == 0 and "parsed" not in err
    finally:
        root.setLevel(logging.INFO)


def test_a_run_finished_without_the_test_set_is_evaluated_on_it_when_asked(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    spec = _spec().on(data, "cpu")
    seen = []
    run_dir = runs.execute(spec, tmp_path / "run", data, "cpu", test=False,
                           on_epoch=lambda epoch, record: seen.append(record["val_accuracy"]) and False)
    assert len(seen) == spec.train_cfg.epochs
    summary = R.read_summary(run_dir)
    assert summary["test_accuracy"] is None and not (run_dir / R.OUTPUTS).exists()
    assert set(R.read_eval(run_dir, test=False)["splits"]) == {"train", "val"}
    with pytest.raises(RunDirError, match="no 'test' split"):
        R.read_eval(run_dir)
    weights = (run_dir / R.BEST).read_bytes()
    runs.execute(spec, run_dir, data, "cpu", explain=False)            # now chosen: its test, once
    after = R.read_summary(run_dir)
    assert 0 <= after["test_accuracy"] <= 1 and (run_dir / R.OUTPUTS).exists()
    assert (run_dir / R.BEST).read_bytes() == weights                  # not trained again
    assert {k: after[k] for k in ("epochs_run", "best_epoch", "train_time_s")} == \
        {k: summary[k] for k in ("epochs_run", "best_epoch", "train_time_s")}


def test_a_run_cut_short_by_on_epoch_is_continued_not_reused(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    spec = _spec(epochs="3").on(data, "cpu")
    run_dir = runs.execute(spec, tmp_path / "run", data, "cpu", test=False, on_epoch=lambda epoch, record: epoch == 1)
    summary = R.read_summary(run_dir)
    assert summary["epochs_run"] == 1 and summary["cut_short"] is True
    assert runs.plan(spec, run_dir) == "resume"
    runs.execute(spec, run_dir, data, "cpu", explain=False)
    summary = R.read_summary(run_dir)
    assert summary["epochs_run"] == 3 and summary["cut_short"] is False and summary["test_accuracy"] is not None
    assert [r["epoch"] for r in R.read_epochs(run_dir)] == [1, 2, 3]


def test_a_run_is_resumed_on_the_kind_of_device_it_recorded(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    data = tiny_dataset()
    run_dir = runs.execute(_spec().on(data, "cpu"), tmp_path / "run", data, "cpu", explain=False)
    (run_dir / R.SUMMARY).unlink()                                       # interrupted before its summary
    config = json.loads((run_dir / R.CONFIG).read_text())
    (run_dir / R.CONFIG).write_text(json.dumps({**config, "device": "cuda"}))
    with pytest.raises(ConfigError, match="trained on cuda; resume it there"):
        runs.resume(run_dir, data, "cpu")
    with pytest.raises(ConfigError, match="on cuda, this one on cpu"):
        runs.execute(_spec().on(data, "cpu"), run_dir, data, "cpu")


def test_a_resumed_format_1_run_is_rewritten_in_format_2(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    run_dir = shutil.copytree(V1_RUN, tmp_path / "run-v1")
    (run_dir / R.SUMMARY).unlink()                                       # as if interrupted after its last epoch
    data = fmbench.load_data(write_tiny_idx(tmp_path / "idx"), verify=False, download=False,
                             cache_dir=tmp_path / "cache")
    runs.resume(run_dir, data, "auto")
    raw = json.loads((run_dir / R.CONFIG).read_text())
    assert raw["format_version"] == 2 and raw["data"]["test_hash"] == data.test_hash
    assert raw["config_hash"] == R.read_summary(run_dir)["config_hash"] == read_spec(run_dir).hash
