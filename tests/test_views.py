"""Test-time views (models/layers.py): flips and 1-pixel shifts as a model switch (`tta_shift`), the
same arithmetic as benchmarks/tta_views.py, the explainers' maps under them, and run identity."""

from __future__ import annotations

import pytest
import torch
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
    assert len(views) == count and sum(w for w, _ in views) == 1.0
    assert sum(w for w, _ in views[: 2 if flip else 1]) == (0.5 if shift else 1.0)   # the unshifted image


@pytest.mark.parametrize("model", ["cnn_best", "vit_best", "hybrid_best"])
@pytest.mark.parametrize("flip, view", [(False, "translate"), (True, "mirror_translate"), (True, "mirror")])
def test_the_switch_scores_as_the_benchmark_does(benchmark_script, model, flip, view):
    tv = benchmark_script("tta_views")
    net = build(model, tta_flip=flip, tta_shift=view != "mirror").eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x), tv.view_logits(net._logits, x, view), rtol=1e-5, atol=1e-5)
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
