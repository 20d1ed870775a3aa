"""`fmbench tune`'s search spaces: each model's is valid for it and shown by `fmbench models`, and
`--space` text reads back what they show."""

from __future__ import annotations

import pytest

from fmbench import space as S
from fmbench.errors import ConfigError
from fmbench.models import REGISTRY
from fmbench.spec import make_spec


@pytest.mark.parametrize("model", REGISTRY)
def test_every_model_declares_a_valid_search_space(model):
    space = REGISTRY[model].space
    assert {"lr", "weight_decay", "warmup_epochs", "label_smoothing", "batch_size", "epochs"} <= set(space)
    for key, p in space.items():
        for value in p.values if isinstance(p, S.Choice) else (p.low, p.high):
            make_spec(model, None, {key: str(value)})   # every end of every range is a valid setting
        assert S.parse(key, str(p)) == p                # what `fmbench models` shows is `--space` syntax


def test_models_shows_each_search_space(run_cli):
    code, out, _ = run_cli("models")
    assert code == 0
    for spec in REGISTRY.values():
        assert f"    search: {S.describe(spec.space)}" in out.splitlines()


def test_space_syntax():
    assert S.parse("lr", "1e-4..1e-2:log") == S.Float(1e-4, 1e-2, log=True)
    assert S.parse("epochs", "2..6") == S.Int(2, 6)
    assert S.parse("dropout", "0..0.5") == S.Float(0.0, 0.5)
    assert S.parse("batch_size", "128|256") == S.Choice((128, 256))
    for bad in ("1..", "3..1", "a|a", "1..2:ln", "0..1:log"):
        with pytest.raises(ConfigError):
            S.parse("x", bad)
