"""A run's spec: what defines its result (model, recipe, data, seed, precision, device type).

`RunSpec.hash` is the run's identity: reuse and resume compare it, and a run directory is named
after it (runs.run_dir_for). Runtime settings (config.RUNTIME_KEYS: threads, evaluation batch
size, compile, channels_last) are recorded but stay out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fmbench import __version__
from fmbench import rundir as R
from fmbench.config import TrainConfig, apply_overrides, config_hash, to_dict
from fmbench.errors import RunDirError
from fmbench.models import get_spec, resolve_config, resolve_preset


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run, as stored in RUN_DIR/config.json (and in a weights card)."""

    model: str
    preset: str
    overrides: dict[str, Any]
    model_cfg: Any
    train_cfg: TrainConfig
    data: dict[str, Any] | None = None     # Dataset.identity of the data it trains on (None: not yet bound)
    device: str | None = None              # device type it trains on: "cpu", "cuda", "mps" (None: not yet bound)

    @property
    def hash(self) -> str:
        return config_hash(self.model, self.model_cfg, self.train_cfg, self.data["key"] if self.data else None,
                           self.device)

    @property
    def family(self) -> str:
        return get_spec(self.model).family

    @property
    def tier(self) -> str:
        return get_spec(self.model).tier

    def on(self, data, device: str = "auto") -> "RunSpec":
        """This spec bound to a loaded data set and a device (both enter the hash and config.json)."""
        from fmbench.runtime import choose_device

        return replace(self, data=data.identity, device=choose_device(device).type)

    def to_json(self) -> dict[str, Any]:
        """config.json's content (rundir.config_record)."""
        return R.config_record(fmbench_version=__version__, model=self.model, family=self.family, tier=self.tier,
                               preset=self.preset, overrides=self.overrides, model_config=to_dict(self.model_cfg),
                               train_config=to_dict(self.train_cfg), config_hash=self.hash, device=self.device,
                               data=self.data)


def make_spec(model: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> RunSpec:
    """The run's spec, not yet bound to data or a device; `preset` None means the model's default."""
    preset = resolve_preset(model, preset)
    model_cfg, train_cfg = resolve_config(model, preset, overrides)
    return RunSpec(model, preset, dict(overrides or {}), model_cfg, train_cfg)


def read_spec(run_dir: Path) -> RunSpec:
    """The run's config.json (any format version), validated against this version's config classes."""
    raw = R.read_config(run_dir)
    return spec_from(raw.get("model"), raw, Path(run_dir) / R.CONFIG)


def spec_from(model: str | None, cfg: dict[str, Any], where: Path | str) -> RunSpec:
    """A RunSpec from its JSON form (config.json or a weights card), validated against this version."""
    try:
        spec = get_spec(model)
        # A model setting added after a run was written takes the value that run was trained with.
        legacy = getattr(spec.config_cls, "LEGACY_DEFAULTS", {})
        model_cfg = apply_overrides(spec.config_cls(), {**legacy, **cfg["model_config"]})
        train_cfg = apply_overrides(TrainConfig(), cfg["train_config"])
        return RunSpec(model, cfg.get("preset", "?"), cfg.get("overrides", {}), model_cfg, train_cfg,
                       cfg.get("data"), cfg.get("device"))
    except (KeyError, TypeError) as e:
        raise RunDirError(f"{where}: missing or invalid field {e}") from None
