"""The weight average (`--set ema=...`, engine/average.py): its arithmetic, what `fit` validates and
keeps with it, resuming it exactly, and that runs without it keep their names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import interrupt_in_epoch, metrics, read_json, stub_speed, tiny_dataset, train_tiny, weights

from fmbench import runs
from fmbench.config import TrainConfig, apply_overrides, config_hash
from fmbench.data.batches import make_splits
from fmbench.engine.average import holding, weight_average
from fmbench.engine.checkpoint import load_state
from fmbench.engine.loop import evaluate, fit
from fmbench.errors import ConfigError, RunDirError
from fmbench.spec import read_spec
from test_engine import _fit_setup, assert_same_run


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_the_average_follows_the_warmed_up_decay_and_copies_counters():
    net = _net()
    average = weight_average(net, 0.3)                  # the warmup reaches the cap at the 4th update
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    for t in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(8, 3))        # moves the BatchNorm buffers and their counter
        average.update_parameters(net)
        decay = 0.0 if t == 0 else min(0.3, (1 + t) / (10 + t))   # the first update copies
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                expected[k] = decay * expected[k] + (1 - decay) * v
            else:
                expected[k] = v.clone()
    got = average.module.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, msg=k)
    assert int(got["1.num_batches_tracked"]) == 6


def test_no_decay_means_no_average():
    assert weight_average(_net(), 0.0) is None


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_ema_outside_0_1_is_a_config_error(value):
    with pytest.raises(ConfigError, match="ema is a decay per step in \\[0, 1\\)"):
        apply_overrides(TrainConfig(), {"ema": value})


def test_holding_lends_the_average_and_gives_the_weights_back():
    net = _net()
    average = weight_average(net, 0.5)
    average.update_parameters(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    own = {k: v.clone() for k, v in net.state_dict().items()}
    with holding(net, average):
        torch.testing.assert_close(net[0].weight, average.module[0].weight)
    for k, v in net.state_dict().items():
        assert torch.equal(v, own[k]), k
    with holding(net, None):                        # no average: the model is left as it is
        assert torch.equal(net[0].weight, own["0.weight"])


def test_fit_validates_saves_and_keeps_the_average(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, "cnn_seed", epochs=3, patience=0, ema=0.9)
    seen = []

    def on_epoch(epoch, record):
        average = load_state(run_dir / "last.state.pt")["average"]
        held = all(torch.equal(v, average[f"module.{k}"]) for k, v in net.state_dict().items())
        val_loss = evaluate(net, splits.val_x, splits.val_y, cfg, "fp32")[0]["loss"]
        seen.append(held and val_loss == pytest.approx(record["val_loss"], rel=1e-5))
        return False

    fit(net, splits, cfg, run_dir, "fp32", on_epoch=on_epoch)
    assert seen == [True, True, True]               # the callback sees the validated (averaged) weights
    best, last = weights(run_dir / "best.safetensors"), weights(run_dir / "last.safetensors")
    assert any(not torch.equal(best[k], last[k]) for k in best if best[k].is_floating_point())
    state = load_state(run_dir / "last.state.pt")["average"]
    assert int(state["n_averaged"]) == 3 * 4        # 3 epochs of 4 steps
    for k, v in net.state_dict().items():           # restore_best: the model is the best epoch's average
        assert torch.equal(v, best[k]), k


def test_ema_without_restore_best_is_a_config_error():
    with pytest.raises(ConfigError, match="ema keeps the weight average as the run's best weights: it needs "
                                          "restore_best=true"):
        apply_overrides(TrainConfig(), {"ema": "0.99", "restore_best": "false"})


def test_an_interrupted_run_with_an_average_resumes_exactly(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    reference = train_tiny(tmp_path / "reference", "cnn_best", epochs=3, ema=0.9)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as mp:
        interrupt_in_epoch(mp, 3)
        with pytest.raises(KeyboardInterrupt):
            train_tiny(run_dir, "cnn_best", epochs=3, ema=0.9)
    assert len(metrics(run_dir)) == 2
    runs.resume(run_dir, tiny_dataset(), "cpu")
    assert_same_run(reference, run_dir)
    assert read_json(run_dir / "config.json")["train_config"]["ema"] == 0.9


def test_runs_named_before_ema_and_tta_shift_keep_their_names():
    # written by `fmbench train` before either setting existed; its stored hash must still be its name
    run = Path(__file__).resolve().parents[1] / "docs/results/record-attempts/vit_best-best-spt-lsa"
    stored = json.loads((run / "config.json").read_text())
    assert "ema" not in stored["train_config"] and "tta_shift" not in stored["model_config"]
    spec = read_spec(run)
    assert spec.hash == stored["config_hash"] == "c068667fc994"
    assert config_hash(spec.model, spec.model_cfg, apply_overrides(spec.train_cfg, {"ema": "0.999"}),
                       spec.data["key"], spec.device) != spec.hash


def test_a_run_with_an_average_does_not_resume_from_one_without(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, "cnn_seed", epochs=1, patience=0)
    fit(net, splits, cfg, run_dir, "fp32")
    (tmp_path / "b").mkdir()
    net2, _, cfg2, _ = _fit_setup(tmp_path / "b", "cnn_seed", epochs=2, patience=0, ema=0.9)
    with pytest.raises(RunDirError, match="no weight average"):
        fit(net2, make_splits(tiny_dataset(), cfg2, torch.device("cpu")), cfg2, run_dir, "fp32", resume=True)
