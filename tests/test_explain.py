"""Saliency maps where the answer is known, their faithfulness measures, and `fmbench explain`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench.errors import ConfigError
from fmbench.explain import choose_method, faithfulness, head_maps, saliency
from fmbench.models.vit import ViT, ViTConfig

QUADRANT = (slice(0, 14), slice(0, 14))          # top-left


def _quadrant_mass(maps: torch.Tensor) -> float:
    """Share of the maps' total mass that lies in the top-left quadrant."""
    return float(maps[:, QUADRANT[0], QUADRANT[1]].sum() / maps.sum())


class Mask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, 28, 28)
        mask[..., QUADRANT[0], QUADRANT[1]] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class QuadrantCNN(nn.Module):
    """A CNN whose features (and so its logits) come from the top-left quadrant only."""

    CAM_LAYER = "features"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Mask())   # (B, 8, 28, 28)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def quadrant_vit() -> ViT:
    """A ViT whose every query attends to the patches of the top-left quadrant (4x4 grid of 7x7 patches)."""
    cfg = ViTConfig(patch_size=7, dim=8, depth=2, heads=2, mlp_dim=8, dropout=0.0, pool="cls",
                    embed_init_std=0.02, center_input=False)
    vit = ViT(cfg).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.zero_()
        for norm in [vit.norm] + [m for b in vit.blocks for m in (b.norm1, b.norm2)]:
            norm.weight.fill_(1)
        marker = torch.zeros(4, 4)
        marker[:2, :2] = 1                                        # quadrant patches carry feature 0
        vit.pos_embed[0, 1:, 0] = marker.flatten()
        for block in vit.blocks:
            D = cfg.dim
            block.attn.qkv.bias[:D] = 1.0                         # every query is (1, ..., 1)
            block.attn.qkv.weight[D, 0] = 30.0                    # key feature 0 <- token feature 0
            block.attn.qkv.weight[D + D // 2, 0] = 30.0           # ... for the second head too
    return vit


def test_gradcam_finds_the_quadrant_a_cnn_reads():
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    maps = saliency(QuadrantCNN().eval(), "cnn", images)
    assert maps.shape == (6, 28, 28) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert _quadrant_mass(maps) > 0.95


def test_rollout_and_last_layer_attention_find_the_quadrant_a_vit_attends_to():
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    vit = quadrant_vit()
    for method in ("rollout", "attention"):
        maps = saliency(vit, "vit", images, method)
        assert maps.shape == (4, 28, 28)
        assert _quadrant_mass(maps) > 0.8, method
    heads = head_maps(vit, images)
    assert heads.shape == (4, 2, 28, 28) and _quadrant_mass(heads.flatten(0, 1)) > 0.8


def test_recording_attention_leaves_the_fast_path_and_the_logits_alone():
    vit = quadrant_vit()
    x = torch.rand(3, 1, 28, 28)
    before = vit(x)
    saliency(vit, "vit", x)
    assert all(not b.attn.record and b.attn.attention_probs is None for b in vit.blocks)
    torch.testing.assert_close(vit(x), before)


def test_flip_averaged_models_get_the_mirrored_map_back():
    model = QuadrantCNN().eval()
    plain = saliency(model, "cnn", torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8))
    from fmbench.models.layers import merge_views, tta_views, view_batch

    class Flipped(QuadrantCNN):      # averages x and its mirror image without saying so (no `views()`)
        def forward(self, x):
            views = tta_views(flip=True, shift=False)
            return merge_views(super().forward(view_batch(x, views)), x.shape[0], views)

    flipped = saliency(Flipped().eval(), "cnn", torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8))
    # The model reads the top-left of x and of mirrored x (= the top-right of x): both halves of the top.
    assert _quadrant_mass(plain) > 0.95
    top = float(flipped[:, :14].sum() / flipped.sum())
    assert top > 0.95 and 0.3 < _quadrant_mass(flipped) < 0.7


def test_deletion_in_saliency_order_beats_a_random_order():
    def prob_of(images: torch.Tensor) -> torch.Tensor:     # true class 0's evidence: the quadrant's brightness
        evidence = images[:, QUADRANT[0], QUADRANT[1]].float().mean((1, 2)) / 255 * 8
        logits = torch.zeros(len(images), 10)
        logits[:, 0] = evidence
        return logits.softmax(1)

    images = torch.full((20, 28, 28), 200, dtype=torch.uint8)
    maps = torch.zeros(20, 28, 28)
    maps[:, QUADRANT[0], QUADRANT[1]] = 1
    d = faithfulness.deletion(prob_of, images, torch.zeros(20, dtype=torch.long), maps)
    assert len(d["saliency_curve"]) == len(d["fractions"]) == 21 and d["n"] == 20
    assert d["saliency_curve"][0] == pytest.approx(d["random_curve"][0])
    assert d["saliency_auc"] < d["random_auc"] - 0.05


def test_rank_correlation_and_the_randomisation_summary():
    a = torch.rand(5, 28, 28)
    flat = torch.zeros(1, 28, 28)
    rho = faithfulness.spearman(torch.cat([a, flat]), torch.cat([a, torch.rand(1, 28, 28)]))
    assert torch.allclose(rho[:5], torch.ones(5)) and rho[5].isnan()
    assert torch.allclose(faithfulness.spearman(a, -a), -torch.ones(5))
    summary = faithfulness.randomisation(torch.cat([a, flat]), torch.cat([-a, flat]))
    assert summary == {"n": 6, "constant_maps": 1, "spearman_mean": -1.0, "spearman_abs_mean": 1.0}


@pytest.mark.parametrize("family, method, message", [
    ("cnn", "rollout", "method rollout explains ViTs and hybrids, but m is a CNN; use gradcam"),
    ("vit", "gradcam", "method gradcam explains CNNs and hybrids, but m is a ViT; use rollout"),
    ("mlp", None, "cannot explain m: unknown model family 'mlp'"),
    ("cnn", "lime", "unknown explanation method 'lime'"),
])
def test_a_method_that_does_not_fit_the_model_is_a_config_error(family, method, message):
    with pytest.raises(ConfigError, match=message):
        choose_method(family, method, "m")


def test_a_model_without_convolutions_names_why_gradcam_cannot_run():
    with pytest.raises(ValueError, match="has no Conv2d layer"):
        saliency(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "cnn", torch.zeros(1, 28, 28, dtype=torch.uint8))


# ----------------------------------------------------------------------------- the command

def _explain(run_cli, data_dir, *args):
    return run_cli("explain", *args, "--data-dir", data_dir, "--no-verify", "--no-download", "--device", "cpu")


@pytest.mark.parametrize("weights", ["cnn_seed", "vit_seed"])
def test_explain_json_gives_one_map_per_image(run_cli, tiny_idx_dir, tmp_path, weights):
    from PIL import Image

    png = tmp_path / "shoe.png"
    Image.fromarray(np.full((40, 30), 255, dtype=np.uint8)).save(png)
    code, out, err = _explain(run_cli, tiny_idx_dir, "--weights", weights, "test:3", png, "--json",
                              "--out", tmp_path / "o.png")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == ["test:3", str(png)]
    for r in rows:
        assert set(r) == {"image", "model", "predicted", "probability", "method", "saliency"}
        assert r["model"] == weights and r["method"] == ("gradcam" if weights == "cnn_seed" else "rollout")
        sal = np.array(r["saliency"])
        assert sal.shape == (28, 28) and sal.min() >= 0 and sal.max() <= 1
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_attention_heads_and_faithfulness(run_cli, tiny_idx_dir, tmp_path):
    code, out, err = _explain(run_cli, tiny_idx_dir, "--weights", "vit_seed", "test:0", "--method", "attention",
                              "--faithfulness", "--json")
    assert code == 0, err
    row = json.loads(out)
    assert np.array(row["heads"]).shape == (8, 28, 28)
    assert set(row["faithfulness"]) == {"deletion", "randomisation"}
    assert row["faithfulness"]["deletion"]["n"] == 20                   # the tiny test set has 20 images


@pytest.mark.parametrize("args, message", [
    (("--weights", "vit_seed", "test:0", "--method", "gradcam"), "method gradcam explains CNNs"),
    (("--weights", "cnn_seed", "test:20"), "test:20: index out of range (the test set has 20 images"),
    (("--weights", "cnn_seed", "test:x"), "test:x: test:INDEX needs a whole number"),
    (("--weights", "cnn_seed", "NOTANIMAGE"), "not a readable image"),
    (("--weights", "cnn_seed", "test:0", "--out", "a.jpg"), "give a .png path"),
    (("--weights", "cnn_seed"), "no IMAGE given"),
    (("--weights", "cnn_seed", "--record"), "--record takes one RUN_DIR"),
])
def test_explain_bad_input_is_one_line_and_exit_2(run_cli, tiny_idx_dir, tmp_path, args, message):
    (tmp_path / "NOTANIMAGE").write_text("hello")
    args = tuple(str(tmp_path / a) if a == "NOTANIMAGE" else a for a in args)
    code, out, err = _explain(run_cli, tiny_idx_dir, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
