"""Test-time views (models/layers.py): flips and 1-pixel shifts as a model switch (`tta_shift`), the
same arithmetic as benchmarks/tta_views.py, the explainers' maps under them, and run identity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench.config import config_hash
from fmbench.explain.gradcam import gradcam
from fmbench.explain.rollout import rollout
from fmbench.models import build_model, resolve_config
from fmbench.models.layers import merge_views, tta_views, view_batch


def build(model: str, **settings) -> torch.nn.Module:
    """A freshly initialised `model` with model settings changed (seed 0)."""
    torch.manual_seed(0)
    return build_model(model, resolve_config(model, None, {k: str(v) for k, v in settings.items()})[0])


@pytest.mark.parametrize("flip, shift, count", [(False, False, 1), (True, False, 2), (False, True, 3), (True, True, 6)])
def test_views_weigh_one_in_all_and_the_image_half(flip, shift, count):
    views = tta_views(flip, shift)
    assert len(views) == count and sum(w for w, *_ in views) == 1.0
    assert sum(w for w, _, s in views if s == 0) == (0.5 if shift else 1.0)   # the unshifted image


def test_shifts_move_the_image_one_pixel_each_way_with_reflected_edges():
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 2] = 1.0
    same, down_right, up_left = view_batch(x, tta_views(flip=False, shift=True))
    assert torch.equal(same, x[0])
    assert down_right[0, 4, 3] == 1 and down_right.sum() == 1
    assert up_left[0, 2, 1] == 1 and up_left.sum() == 1
    edge = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert torch.equal(view_batch(edge, tta_views(False, True))[1, 0, 0, 1:], edge[0, 0, 1, :4])   # row 1 reflected


@pytest.mark.parametrize("model", ["cnn_best", "vit_best", "hybrid_best"])
@pytest.mark.parametrize("flip, shift", [(False, True), (True, True), (True, False)])
def test_the_switch_averages_airbenchs_views(model, flip, shift):
    # benchmarks/tta_views.py scores trained weights with these views, so its figures are the switch's
    net = build(model, tta_flip=flip, tta_shift=shift).eval()
    x = torch.rand(4, 1, 28, 28)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    down_right, up_left = padded[..., :28, :28], padded[..., 2:, 2:]
    one = (lambda v: (net._logits(v) + net._logits(v.flip(-1))) / 2) if flip else net._logits   # noqa: E731
    expected = one(x) / 2 + (one(down_right) + one(up_left)) / 4 if shift else one(x)
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)
        net.train()
        torch.testing.assert_close(net(x), net._logits(x))        # training sees the image alone


def test_merge_views_mirrors_mirrored_maps_back():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(6, 4, 4)    # 3 images, 2 views
    views = tta_views(flip=True, shift=False)
    torch.testing.assert_close(merge_views(maps, 3, views, unflip=True), (maps[:3] + maps[3:].flip(-1)) / 2)
    torch.testing.assert_close(merge_views(maps, 3, unflip=True), (maps[:3] + maps[3:].flip(-1)) / 2)  # by count
    assert view_batch(maps[:3, None], views).shape == (6, 1, 4, 4)


@pytest.mark.parametrize("model, explain", [("cnn_best", gradcam), ("vit_best", rollout), ("hybrid_best", rollout)])
def test_explanations_keep_one_map_per_image_under_shifts(model, explain):
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    plain = explain(build(model, tta_shift=False).eval(), x)
    shifted = explain(build(model, tta_shift=True).eval(), x)
    assert shifted.shape == plain.shape and shifted.shape[0] == 3
    assert not torch.allclose(shifted, plain)                      # the shifted views count


@pytest.mark.parametrize("model", ["cnn_best", "vit_best", "hybrid_best"])
def test_tta_shift_off_keeps_a_runs_name_and_on_changes_it(model):
    m, t = resolve_config(model, "fast")
    off, _ = resolve_config(model, "fast", {"tta_shift": "false"})
    on, _ = resolve_config(model, "fast", {"tta_shift": "true"})
    assert m.tta_shift is False and on.tta_shift is True
    assert config_hash(model, off, t) == config_hash(model, m, t) != config_hash(model, on, t)
