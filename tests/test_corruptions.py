"""Corruptions are pure functions of (images, severity, seed): uint8 in and out, severity 0 the identity."""

from __future__ import annotations

import pytest
import torch

from fmbench import corruptions as C
from fmbench.errors import ConfigError

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "rotate", "translate", "shear", "erase",
          "elastic"}


def garments(n: int = 6) -> torch.Tensor:
    """Light blobs on black, like Fashion-MNIST's garments (uint8, (n, 28, 28))."""
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = []
    for i in range(n):
        cy, cx = 12 + i % 4, 13 + i % 3
        blob = torch.exp(-(((yy - cy) / 7) ** 2 + ((xx - cx) / 5) ** 2))
        out.append((blob * 230).round().to(torch.uint8))
    return torch.stack(out)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_each_corruption_is_uint8_deterministic_and_identity_at_severity_0(name):
    x = garments()
    assert torch.equal(C.corrupt(x, name, 0, seed=3), x)
    for severity in range(1, C.MAX_SEVERITY + 1):
        y = C.corrupt(x, name, severity, seed=3)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        assert torch.equal(y, C.corrupt(x, name, severity, seed=3))        # same arguments, same bytes
        assert not torch.equal(y, x), f"{name} severity {severity} changed nothing"
    if name in RANDOM:
        assert not torch.equal(C.corrupt(x, name, 3, seed=3), C.corrupt(x, name, 3, seed=4))


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_severity_5_damages_more_than_severity_1(name):
    x = garments(20)
    d1 = (C.corrupt(x, name, 1).float() - x.float()).abs().mean()
    d5 = (C.corrupt(x, name, 5).float() - x.float()).abs().mean()
    assert d5 > d1


def test_every_corruption_has_five_documented_severities():
    doc = C.__doc__
    for name, values in C.SEVERITIES.items():
        assert len(values) == C.MAX_SEVERITY
        assert f"| {name}" in doc


@pytest.mark.parametrize("args, message", [
    (("fog", 1), "unknown corruption 'fog'"),
    (("rotate", 6), "severity must be an integer from 0 to 5, got 6"),
    (("rotate", -1), "severity must be an integer from 0 to 5"),
])
def test_bad_corruption_or_severity_is_a_config_error(args, message):
    with pytest.raises(ConfigError, match=message):
        C.corrupt(garments(1), *args)


def test_float_images_are_refused():
    with pytest.raises(ConfigError, match="uint8 images"):
        C.corrupt(torch.rand(2, 28, 28), "rotate", 1)
