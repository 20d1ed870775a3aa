"""best.json, a search's chosen recipe: `fmbench train MODEL --recipe FILE` and
`fmbench.train(..., recipe=FILE)` read it here (fmbench.tuning.finish writes it). Needs no Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmbench.errors import ConfigError
from fmbench.fileio import read_json

RECIPE_VERSION = 1


def as_text(value: Any) -> str:
    """A setting's value as `--set` writes it, so that a trial and its recipe have one identity."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def read_recipe(path: str | Path, model: str | None = None) -> tuple[str, str, dict[str, str]]:
    """best.json's (model, preset, settings as `--set` text); a recipe of another `model` than the
    one given is a ConfigError."""
    rec = read_json(path)
    if not (isinstance(rec, dict) and isinstance(rec.get("overrides"), dict) and {"model", "preset"} <= set(rec)):
        raise ConfigError(f"{path}: not a recipe (fmbench tune's best.json: model, preset, overrides)")
    if model is not None and rec["model"] != model:
        raise ConfigError(f"{path} is a recipe for {rec['model']}, not {model}")
    return rec["model"], rec["preset"], {k: as_text(v) for k, v in rec["overrides"].items()}


def apply_recipe(path: str | Path | None, model: str, preset: str | None,
                 overrides: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(preset, overrides) of `--recipe FILE` with `--set` on top; `preset` must be the recipe's."""
    if path is None:
        return preset, dict(overrides)
    _, held, settings = read_recipe(path, model)
    if preset is not None and preset != held:
        raise ConfigError(f"{path} is a recipe on preset {held}, not {preset}; leave --preset out")
    return held, {**settings, **overrides}
