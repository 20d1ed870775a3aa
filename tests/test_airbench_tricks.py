"""airbench94's network and optimizer tricks on `cnn_best` (issue 26): BatchNorm biases at a multiple
of the lr (`bias_lr_scale`), fixed BatchNorm scales (`bn_scale=false`), identity-initialised
convolutions (`dirac=true`) and a frozen patch-whitening stem (`whiten=true`); docs/performance.md
measures them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import interrupt_in_epoch, same_tensors, stub_speed, tiny_dataset, train_tiny, weights

from fmbench import runs

from fmbench.config import TrainConfig, apply_overrides, config_hash
from fmbench.engine.optim import make_optimizer, make_scheduler
from fmbench.errors import ConfigError
from fmbench.data.batches import make_splits, to_input
from fmbench.models.resnet import ConvBN, ResNet, ResNetConfig, Whiten
from fmbench.spec import read_spec

SGD = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, epochs=2, schedule="onecycle")


def test_bias_lr_scale_puts_the_norm_layers_in_a_faster_group_with_the_same_decay_per_step():
    model = ResNet(ResNetConfig(stem=4, widths=(4, 8, 8)))
    opt = make_optimizer(model, apply_overrides(SGD, {"bias_lr_scale": "64"}))
    weights_group, norm_group = opt.param_groups
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(p) for p in norm_group["params"]} == {id(p) for m in norms for p in (m.weight, m.bias)}
    assert any(p is model.head.bias for p in weights_group["params"])      # the head's bias is not a norm's
    assert weights_group["lr"] == 0.1 and weights_group["weight_decay"] == 5e-4
    assert norm_group["lr"] == pytest.approx(6.4)
    assert norm_group["lr"] * norm_group["weight_decay"] == pytest.approx(0.1 * 5e-4)
    sched = make_scheduler(opt, SGD, steps_per_epoch=10)                   # one schedule scales both
    for _ in range(15):
        opt.step()
        sched.step()
    assert norm_group["lr"] / weights_group["lr"] == pytest.approx(64)
    assert weights_group["lr"] < 0.1


def test_without_bias_lr_scale_sgd_keeps_one_group():
    assert len(make_optimizer(ResNet(ResNetConfig(stem=4, widths=(4, 8, 8))), SGD).param_groups) == 1


@pytest.mark.parametrize("overrides, message", [
    ({"bias_lr_scale": "0"}, "bias_lr_scale must be > 0, got 0.0"),
    ({"bias_lr_scale": "64", "optimizer": "adamw"}, "bias_lr_scale applies to optimizer=sgd only, got "
                                                     "optimizer='adamw'"),
])
def test_bad_bias_lr_scale_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(SGD, overrides)


def test_bias_lr_scale_on_an_adamw_model_is_one_line_from_the_cli(run_cli, tmp_path):
    code, out, err = run_cli("train", "vit_best", "--set", "bias_lr_scale=64", "--out", tmp_path / "run")
    assert code == 2 and out == "" and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln] == [
        "fmbench: error: bias_lr_scale applies to optimizer=sgd only, got optimizer='adamw'"]
    assert not (tmp_path / "run").exists()


def test_dirac_starts_a_conv_as_the_identity_on_its_first_inputs():
    torch.manual_seed(0)
    conv = ConvBN(4, 8, dirac=True)[0]
    x = torch.randn(2, 4, 6, 6)
    y = conv(x)
    torch.testing.assert_close(y[:, :4], x)
    assert y[:, 4:].abs().sum() > 0                                          # the other outputs stay random
    assert not torch.allclose(ConvBN(4, 8)[0](x)[:, :4], x)


def test_fixed_bn_scales_stay_at_one_while_the_biases_learn(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    run = train_tiny(tmp_path / "run", "cnn_best", epochs=2, optimizer="sgd", lr=0.05, bn_scale=False,
                     bias_lr_scale=8, dirac=True)
    w = weights(run / "best.safetensors")
    scales = [k for k in w if k.endswith(".1.weight")]                      # each ConvBN's BatchNorm
    assert scales and all(torch.equal(w[k], torch.ones_like(w[k])) for k in scales)
    assert all(w[k.replace(".weight", ".bias")].abs().sum() > 0 for k in scales)
    stored = json.loads((run / "config.json").read_text())
    assert stored["model_config"]["bn_scale"] is False and stored["model_config"]["dirac"] is True
    assert stored["train_config"]["bias_lr_scale"] == 8


def test_the_cnn_record_attempt_named_before_these_settings_keeps_its_name():
    run = Path(__file__).resolve().parents[1] / "docs/results/record-attempts/cnn_best-best-120"
    stored = json.loads((run / "config.json").read_text())
    assert "bias_lr_scale" not in stored["train_config"] and "dirac" not in stored["model_config"]
    spec = read_spec(run)
    assert spec.hash == stored["config_hash"]
    for model_cfg, train_cfg in [(ResNetConfig(**{**vars(spec.model_cfg), "dirac": True}), spec.train_cfg),
                                 (ResNetConfig(**{**vars(spec.model_cfg), "bn_scale": False}), spec.train_cfg),
                                 (spec.model_cfg, apply_overrides(spec.train_cfg, {"bias_lr_scale": "64"}))]:
        assert config_hash(spec.model, model_cfg, train_cfg, spec.data["key"], spec.device) != spec.hash


def test_whiten_needs_the_stem_width_it_makes():
    with pytest.raises(ConfigError, match="whiten makes the stem the 18 whitening filters of 3x3 patches .*: set "
                                          "stem=18, got stem=32"):
        ResNetConfig(whiten=True)


def test_whitening_filters_decorrelate_the_patches_they_were_fitted_on():
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(64, 1, 30, 30), 3, stride=1)   # neighbours correlate
    whiten = Whiten()
    whiten.init_from_data(smooth, eps=0.0)                         # airbench's eps only damps the weakest
    patches = torch.nn.functional.unfold(smooth, 3).transpose(1, 2).reshape(-1, 9)
    out = patches @ whiten[0].weight[:9].reshape(9, 9).T + whiten[0].bias[:9]          # the 9 eigen-directions
    torch.testing.assert_close(out.mean(0), torch.zeros(9), atol=1e-4, rtol=0)         # centred by the bias
    cov = out.T @ out / len(out)
    torch.testing.assert_close(cov.diagonal(), torch.ones(9), atol=0.01, rtol=0)       # unit variance each...
    assert (cov - torch.diag(cov.diagonal())).abs().max() < 0.01                       # ...and uncorrelated
    torch.testing.assert_close(whiten[0].weight[9:], -whiten[0].weight[:9])             # and their negatives
    whiten.init_from_data(smooth)                                                      # the default eps:
    damped = (patches @ whiten[0].weight[:9].reshape(9, 9).T).var(0)                   # strongest first, at ~1
    assert damped[0] > 0.99 and (damped[:-1] >= damped[1:] - 1e-3).all() and damped[-1] < damped[0] - 0.005


def test_a_whitened_run_fits_its_stem_to_its_training_images_keeps_it_frozen_and_resumes_exactly(tmp_path,
                                                                                                  monkeypatch):
    stub_speed(monkeypatch)
    settings = dict(epochs=2, optimizer="sgd", lr=0.05, whiten=True, stem=18)
    reference = train_tiny(tmp_path / "reference", "cnn_best", **settings)
    w = weights(reference / "best.safetensors")
    spec = read_spec(reference)
    fitted = Whiten()
    cfg = spec.train_cfg
    fitted.init_from_data(to_input(make_splits(tiny_dataset(), cfg, torch.device("cpu")).train_x[:5000]))
    torch.testing.assert_close(w["stem.0.weight"], fitted[0].weight, rtol=0, atol=0)   # frozen after fitting
    assert w["stem.0.bias"].abs().sum() > 0                                            # its bias learns
    for epoch in (1, 2):                  # before the first checkpoint, and after it
        run_dir = tmp_path / f"run{epoch}"
        with monkeypatch.context() as mp:
            interrupt_in_epoch(mp, epoch)
            with pytest.raises(KeyboardInterrupt):
                train_tiny(run_dir, "cnn_best", **settings)
        runs.resume(run_dir, tiny_dataset(), "cpu")
        assert same_tensors(weights(run_dir / "best.safetensors"), w)
