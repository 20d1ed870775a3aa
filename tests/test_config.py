"""Configs, presets and `--set` overrides: every bad value is a ConfigError with a clear message,
and through the CLI an exit code 2 with one line and no traceback."""

from __future__ import annotations

import dataclasses

import pytest
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench.spec import make_spec, read_spec
from fmbench.config import (TrainConfig, apply_overrides, config_hash, field_names, parse_set_args,
                            split_overrides)
from fmbench.errors import ConfigError
from fmbench.models import REGISTRY, get_spec, resolve_config
from fmbench.models.cnn import CNNSeedConfig
from fmbench.models.vit import ViTConfig


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- presets

def test_cnn_seed_preset_is_the_studys_recipe():
    model_cfg, cfg = resolve_config("cnn_seed", "seed")
    assert model_cfg == CNNSeedConfig()
    assert (cfg.optimizer, cfg.lr, cfg.beta1, cfg.beta2) == ("adam", 1e-3, 0.9, 0.999)
    assert (cfg.batch_size, cfg.epochs) == (1024, 500)
    assert (cfg.monitor, cfg.patience, cfg.seed) == ("val_loss", 20, 42)
    assert (cfg.aug_hflip, cfg.aug_vflip, cfg.aug_zoom) == (0.5, 0.5, 0.2)
    assert (cfg.aug_rotation, cfg.aug_translate, cfg.aug_erase, cfg.label_smoothing) == (0, 0, 0, 0)


def test_vit_seed_preset_is_the_studys_recipe():
    model_cfg, cfg = resolve_config("vit_seed", "seed")
    assert model_cfg == ViTConfig()
    assert (cfg.optimizer, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay) == ("adam", 1e-4, 0.9, 0.999, 1e-3)
    assert (cfg.batch_size, cfg.epochs, cfg.patience) == (256, 60, 0)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_overrides_beat_the_preset_and_are_typed(name):
    model_cfg, cfg = resolve_config(name, None, {"epochs": "3", "lr": "3e-4", "channels_last": "false"})
    assert (cfg.epochs, cfg.lr, cfg.channels_last) == (3, 3e-4, False)
    assert type(cfg.epochs) is int and type(cfg.lr) is float
    assert isinstance(model_cfg, get_spec(name).config_cls)


def test_model_settings_go_to_the_model_config():
    model_cfg, cfg = resolve_config("vit_seed", "fast", {"depth": "2", "dropout": "0", "lr": "1e-3"})
    assert (model_cfg.depth, model_cfg.dropout, cfg.lr) == (2, 0.0, 1e-3)


def test_unknown_preset_lists_the_available_ones():
    msg = _error(resolve_config, "cnn_seed", "fastest")
    assert "unknown preset 'fastest' for cnn_seed" in msg
    for preset in get_spec("cnn_seed").presets:
        assert preset in msg


# ---------------------------------------------------------------- bad overrides

def test_unknown_key_lists_every_valid_key():
    msg = _error(resolve_config, "cnn_seed", "fast", {"learning_rate": "1e-3"})
    assert "unknown setting 'learning_rate'" in msg
    for key in field_names(TrainConfig) + field_names(CNNSeedConfig):
        assert key in msg
    msg = _error(apply_overrides, TrainConfig(), {"nope": 1})
    assert "unknown setting 'nope'" in msg and "batch_size" in msg and "weight_decay" in msg


def test_split_overrides_sends_each_key_to_its_config():
    train, model = split_overrides({"lr": "1", "depth": "2"}, ViTConfig)
    assert train == {"lr": "1"} and model == {"depth": "2"}


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "abc", "--set epochs=abc: expected a value of type int"),
    ("epochs", "2.5", "--set epochs=2.5: expected a value of type int"),
    ("lr", "fast", "--set lr=fast: expected a value of type float"),
    ("channels_last", "maybe", "--set channels_last=maybe: expected a value of type bool"),
])
def test_wrong_type(key, value, message):
    assert message in _error(resolve_config, "cnn_seed", "fast", {key: value})


@pytest.mark.parametrize("model, key, value, message", [
    ("cnn_seed", "lr", "-1", "lr must be > 0, got -1.0"),
    ("cnn_seed", "lr", "0", "lr must be > 0"),
    ("cnn_seed", "lr", "nan", "lr must be a finite number"),
    ("cnn_seed", "lr", "inf", "lr must be a finite number"),
    ("cnn_seed", "epochs", "0", "epochs must be >= 1, got 0"),
    ("cnn_seed", "batch_size", "-8", "batch_size must be >= 1"),
    ("cnn_seed", "optimizer", "rmsprop", "optimizer must be one of adam, adamw, sgd; got 'rmsprop'"),
    ("cnn_seed", "schedule", "step", "schedule must be one of constant, cosine, onecycle"),
    ("cnn_seed", "monitor", "val_auc", "monitor must be one of val_loss, val_accuracy, val_f1"),
    ("cnn_seed", "precision", "fp8", "precision must be one of auto, fp32, bf16, fp16"),
    ("cnn_seed", "val_fraction", "1", "val_fraction must be in (0, 1)"),
    ("cnn_seed", "aug_hflip", "1.5", "aug_hflip is a probability in [0, 1], got 1.5"),
    ("cnn_seed", "warmup_epochs", "20", "warmup_epochs must be in [0, epochs]"),
    ("cnn_seed", "dropout", "1", "dropout must be in [0, 1), got 1.0"),
    ("vit_seed", "patch_size", "5", "image size 28 is not divisible by patch size 5"),
    ("vit_seed", "patch_size", "3", "image size 28 is not divisible by patch size 3"),
    ("vit_seed", "heads", "3", "dim 16 is not divisible by heads 3"),
    ("vit_seed", "aug_interp", "bicubic", "aug_interp must be one of bilinear, nearest; got 'bicubic'"),
    ("cnn_seed", "aug_fill", "wrap", "aug_fill must be one of zeros, reflect; got 'wrap'"),
    ("vit_seed", "val_split", "kfold", "val_split must be one of stratified, random; got 'kfold'"),
    ("vit_seed", "init", "xavier", "init must be 'torch' or 'independent', got 'xavier'"),
    ("cnn_seed", "restore_best", "maybe", "--set restore_best=maybe: expected a value of type bool"),
])
def test_invalid_value(model, key, value, message):
    overrides = {key: value, **({"epochs": "10"} if key == "warmup_epochs" else {})}
    assert message in _error(resolve_config, model, None, overrides)


@pytest.mark.parametrize("item", ["lr", "=3e-4", "lr=", " =1"])
def test_malformed_set_item(item):
    assert "expected KEY=VALUE, for example --set lr=3e-4" in _error(parse_set_args, [item])


def test_parse_set_args():
    assert parse_set_args(["lr=3e-4", " epochs = 5", "note=a=b"]) == {"lr": "3e-4", "epochs": "5", "note": "a=b"}
    assert parse_set_args(None) == {}


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- hashes and the stored config

def test_config_hash_is_stable_and_sees_every_setting():
    m, t = resolve_config("cnn_seed", "fast")
    h = config_hash("cnn_seed", m, t)
    assert h == config_hash("cnn_seed", *resolve_config("cnn_seed", "fast")) and len(h) == 12
    assert h != config_hash("cnn_seed", m, apply_overrides(t, {"seed": "43"}))
    assert h != config_hash("cnn_seed", apply_overrides(m, {"dense": "64"}), t)
    assert h != config_hash("vit_seed", m, t)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_stored_config_reads_back_identically(tmp_path, name):
    from fmbench.fileio import write_json

    rc = make_spec(name, None, {"epochs": "4", "lr": "5e-4"})
    write_json(tmp_path / "config.json", rc.to_json())
    back = read_spec(tmp_path)
    assert back == rc and back.hash == rc.hash
    assert back.overrides == {"epochs": "4", "lr": "5e-4"}


# ---------------------------------------------------------------- through the CLI

@pytest.mark.parametrize("argv, message", [
    (["--set", "learning_rate=1e-3"], "unknown setting 'learning_rate'; training settings: "),
    (["--set", "epochs=many"], "--set epochs=many: expected a value of type int"),
    (["--set", "lr=-0.1"], "lr must be > 0, got -0.1"),
    (["--set", "optimizer=rmsprop"], "optimizer must be one of adam, adamw, sgd; got 'rmsprop'"),
    (["--set", "val_split=kfold"], "val_split must be one of stratified, random; got 'kfold'"),
    (["--set", "lr"], "expected KEY=VALUE"),
    (["--preset", "fastest"], "unknown preset 'fastest' for cnn_seed"),
])
def test_bad_overrides_through_the_cli(run_cli, tiny_idx_dir, tmp_path, argv, message):
    code, out, err = run_cli("train", "cnn_seed", *argv, "--data-dir", tiny_idx_dir, "--no-verify",
                             "--out", tmp_path / "run")
    assert code == 2
    assert out == "" and err.startswith("fmbench: error: ") and err.count("\n") == 1
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing is written for a bad config


def test_bad_patch_size_through_the_cli(run_cli, tiny_idx_dir, tmp_path):
    code, _, err = run_cli("train", "vit_seed", "--set", "patch_size=5", "--data-dir", tiny_idx_dir,
                           "--no-verify", "--out", tmp_path / "run")
    assert code == 2 and err == "fmbench: error: image size 28 is not divisible by patch size 5\n"


def test_unknown_model_through_the_cli(run_cli, tmp_path):
    code, _, err = run_cli("train", "resnet999", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1
    assert "unknown model 'resnet999'; available: " in err and "cnn_seed" in err and "vit_seed" in err


def test_fp16_on_cpu_is_a_config_error(run_cli, tiny_idx_dir, tmp_path):
    code, _, err = run_cli("train", "cnn_seed", "--device", "cpu", "--precision", "fp16",
                           "--data-dir", tiny_idx_dir, "--no-verify", "--out", tmp_path / "run")
    assert code == 2 and err.strip().endswith("precision fp16 is not supported on CPU; use bf16 or fp32")
    assert "Traceback" not in err
