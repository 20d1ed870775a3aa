"""Typed training configuration, named presets, and `--set key=value` overrides (one place)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import json
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from fmbench.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
MONITORS = ("val_loss", "val_accuracy", "val_f1")
AUG_INTERPS = ("bilinear", "nearest")
AUG_FILLS = ("zeros", "reflect")
VAL_SPLITS = ("stratified", "random")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Settings that change how fast a run goes, not what it learns: they are recorded (config.json,
# env.json) but stay out of the run's identity, so `--set threads=1` reuses a run trained on two.
RUNTIME_KEYS = ("threads", "eval_batch_size", "compile", "channels_last")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Defaults are the study's CNN recipe; presets change them."""

    # Settings added after runs were named, at the behaviour those runs had (see config_hash).
    IDENTITY_NEUTRAL = {"ema": 0.0, "bias_lr_scale": 1.0}

    seed: int = 42
    epochs: int = 500
    batch_size: int = 1024          # per process
    optimizer: str = "adam"
    lr: float = 1e-3                # peak learning rate
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9           # sgd only
    bias_lr_scale: float = 1.0      # sgd only: norm layers' biases (and scales) at this multiple of lr, their
                                    # weight decay divided by it (the same decay per step): airbench's 64
    weight_decay: float = 0.0       # adam: L2 added to the gradient; adamw: decoupled
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0          # max global grad norm; 0 = off
    ema: float = 0.0                # decay per optimizer step of an average of the weights that is validated
                                    # and kept (engine/average.py); 0 = off, the last step's weights
    # early stopping (Keras EarlyStopping); patience 0 = off
    monitor: str = "val_loss"
    patience: int = 20
    min_delta: float = 0.0
    restore_best: bool = True       # the run's model is its best epoch's (False: its last, Keras' default)
    # augmentation, applied to whole batches on the model's device
    aug_hflip: float = 0.0          # probability of a horizontal flip
    aug_vflip: float = 0.0          # probability of a vertical flip
    aug_zoom: float = 0.0           # zoom factor drawn from [1 - z, 1 + z] (Keras RandomZoom)
    aug_rotation: float = 0.0       # max rotation in degrees, uniform in [-r, r]
    aug_translate: int = 0          # random shift of up to N pixels (pad-and-crop)
    aug_erase: float = 0.0          # probability of random erasing
    aug_interp: str = "bilinear"    # zoom/rotation resampling: "bilinear" or "nearest" (torchvision's default)
    aug_fill: str = "zeros"         # outside the image after zoom/rotation: "zeros" or "reflect" (Keras' default)
    # data
    val_fraction: float = 0.1
    val_split: str = "stratified"   # "stratified" per class, or "random" as sklearn's train_test_split
    train_size: int = 0             # 0 = all training images left after the validation split
    # runtime: how the run executes, not what it learns (RUNTIME_KEYS; recorded, not hashed), and precision
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 2048
    threads: int = 0                # 0 = PyTorch's default

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                need(math.isfinite(value), f"{f.name} must be a finite number, got {value}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        need(self.bias_lr_scale > 0, f"bias_lr_scale must be > 0, got {self.bias_lr_scale}")
        need(self.bias_lr_scale == 1 or self.optimizer == "sgd",
             f"bias_lr_scale applies to optimizer=sgd only, got optimizer={self.optimizer!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        need(self.monitor in MONITORS, f"monitor must be one of {', '.join(MONITORS)}; got {self.monitor!r}")
        need(self.aug_interp in AUG_INTERPS, f"aug_interp must be one of {', '.join(AUG_INTERPS)}; got {self.aug_interp!r}")
        need(self.aug_fill in AUG_FILLS, f"aug_fill must be one of {', '.join(AUG_FILLS)}; got {self.aug_fill!r}")
        need(self.val_split in VAL_SPLITS, f"val_split must be one of {', '.join(VAL_SPLITS)}; got {self.val_split!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        need(0 <= self.warmup_epochs <= self.epochs, f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        need(0 <= self.ema < 1, f"ema is a decay per step in [0, 1) (0 = off, 0.999 typical), got {self.ema}")
        need(self.ema == 0 or self.restore_best, "ema keeps the weight average as the run's best weights: "
             "it needs restore_best=true")
        need(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        need(self.min_delta >= 0, f"min_delta must be >= 0, got {self.min_delta}")
        for name in ("aug_hflip", "aug_vflip", "aug_erase"):
            need(0 <= getattr(self, name) <= 1, f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        need(0 <= self.aug_zoom < 1, f"aug_zoom must be in [0, 1), got {self.aug_zoom}")
        need(0 <= self.aug_rotation <= 180, f"aug_rotation must be in [0, 180] degrees, got {self.aug_rotation}")
        need(0 <= self.aug_translate <= 14, f"aug_translate must be in [0, 14] pixels, got {self.aug_translate}")
        need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        need(self.train_size >= 0, f"train_size must be >= 0 (0 = all), got {self.train_size}")
        need(self.threads >= 0, f"threads must be >= 0 (0 = default), got {self.threads}")


def field_names(cfg_cls: type) -> list[str]:
    """The names a user may set on a config dataclass."""
    return [f.name for f in fields(cfg_cls)]


def _parse_value(key: str, raw: Any, typ: Any) -> Any:
    """Convert a `--set` string to the field's type, or raise ConfigError."""
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            value = float(raw)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(raw)
        if typ is str:
            return raw
        if origin is tuple:
            return tuple(int(v) for v in raw.split(","))
    except ValueError:
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"--set {key}={raw}: expected a value of type {name}") from None
    raise ConfigError(f"--set {key}: unsupported type {typ}")


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Return `cfg` with the given fields replaced (strings parsed to the field's type)."""
    if not overrides:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    valid = field_names(type(cfg))
    changes = {}
    for key, raw in overrides.items():
        if key not in valid:
            raise ConfigError(f"unknown setting {key!r}; valid: {', '.join(sorted(valid))}")
        changes[key] = _parse_value(key, raw, hints[key])
    try:
        return replace(cfg, **changes)
    except TypeError as e:  # pragma: no cover - replace() only fails on unknown fields
        raise ConfigError(str(e)) from None


def parse_set_args(items: list[str] | None, flag: str = "--set", example: str = "lr=3e-4") -> dict[str, str]:
    """Turn ['lr=3e-4', 'epochs=5'] into {'lr': '3e-4', 'epochs': '5'}; a malformed item is an error
    naming `flag` (--set, or --space for `fmbench tune`'s ranges)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or value == "":
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, for example {flag} {example}")
        out[key] = value.strip()
    return out


def split_overrides(overrides: dict[str, Any], model_cfg_cls: type) -> tuple[dict, dict]:
    """Split flat overrides into (train, model) parts; an unknown key lists every valid one."""
    train_keys, model_keys = set(field_names(TrainConfig)), set(field_names(model_cfg_cls))
    train, model = {}, {}
    for key, value in overrides.items():
        if key in train_keys:
            train[key] = value
        elif key in model_keys:
            model[key] = value
        else:
            raise ConfigError(
                f"unknown setting {key!r}; training settings: {', '.join(sorted(train_keys))}; "
                f"model settings: {', '.join(sorted(model_keys))}"
            )
    return train, model


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def recipe(train_cfg: Any) -> dict[str, Any]:
    """The training settings that change the result: `train_cfg` without RUNTIME_KEYS."""
    return {k: v for k, v in to_dict(train_cfg).items() if k not in RUNTIME_KEYS}


def config_hash(model: str, model_cfg: Any, train_cfg: Any, data_key: str | None = None,
                device: str | None = None) -> str:
    """A short stable hash of what defines a run's result (reuse and resume check it): the model,
    its config, the recipe (no runtime settings), and when known the data set's key and the device
    type ("cpu", "cuda", "mps"), so other data or another kind of device never reuses a run. A model or
    training setting in its config class's IDENTITY_NEUTRAL is left out while it holds the value named
    there (a setting added after runs were named, at the behaviour those runs had), so they keep their names."""
    def part(cfg: Any, settings: dict[str, Any]) -> dict[str, Any]:
        neutral = getattr(type(cfg), "IDENTITY_NEUTRAL", {})   # settings added later, at their old behaviour
        return {k: v for k, v in settings.items() if not (k in neutral and v == neutral[k])}

    parts = {"name": model, "model": part(model_cfg, to_dict(model_cfg)), "train": part(train_cfg, recipe(train_cfg))}
    if data_key is not None:
        parts["data"] = data_key
    if device is not None:
        parts["device"] = device
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
