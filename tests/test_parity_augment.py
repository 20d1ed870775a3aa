"""The seed recipes' data pipeline against the libraries the study's code used (issue 23):
torchvision's RandomRotation(15) (nearest neighbour, fill 0: PIL's Image.rotate underneath, since
torchvision does not import beside this torch build), Keras' RandomZoom (bilinear, fill_mode
"reflect"), and sklearn's train_test_split(test_size=0.1, random_state=42, shuffle=True)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from fmbench.config import TrainConfig  # noqa: E402
from fmbench.data.batches import augment, make_splits, random_split, to_input, zoom_rotate  # noqa: E402


def photo_like(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 28, 28) images with smooth structure and hard edges, like clothes on black."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = []
    for _ in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([10, 10, 6]) + torch.tensor([9, 9, 6])).tolist()
        blob = ((xs - cx) ** 2 + (ys - cy) ** 2 < r * r).float() * (120 + 100 * torch.rand(28, 28, generator=g))
        out.append(blob.clamp(0, 255).to(torch.uint8))
    return torch.stack(out)


@pytest.mark.parametrize("degrees", [-15.0, -7.3, 0.0, 4.1, 11.9, 15.0])
def test_nearest_rotation_is_pils(degrees):
    imgs = photo_like(16)
    ours = zoom_rotate(to_input(imgs), torch.ones(16), torch.full((16,), math.radians(degrees)), "nearest", "zeros")
    ours = (ours[:, 0] * 255).round().to(torch.uint8)
    for img, mine in zip(imgs, ours):
        pil = torch.from_numpy(np.array(Image.fromarray(img.numpy()).rotate(degrees, resample=Image.NEAREST, fillcolor=0)))
        # The same pixel everywhere but where an output pixel's centre falls within float rounding
        # of a source pixel's edge (PIL rounds its matrix to 15 digits; grid_sample works in float32).
        assert (pil != mine).sum() <= 2


def test_seed_recipe_rotates_within_15_degrees_nearest():
    cfg = TrainConfig(aug_rotation=15, aug_interp="nearest")
    imgs = photo_like(32, seed=1)
    out = augment(to_input(imgs), cfg, torch.Generator().manual_seed(0))
    values = set(torch.unique(imgs).tolist()) | {0}
    assert set(torch.unique((out * 255).round()).int().tolist()) <= values    # nearest: no new grey levels
    best = []
    for img, mine in zip(imgs, (out[:, 0] * 255).round().to(torch.uint8)):
        diffs = [(torch.from_numpy(np.array(Image.fromarray(img.numpy()).rotate(a, resample=Image.NEAREST)))
                  != mine).sum().item() for a in np.arange(-15, 15.01, 0.05)]
        best.append(min(diffs))
    assert max(best) <= 8                      # every image is a PIL rotation by some angle in [-15, 15]


@pytest.mark.parametrize("factor", [-0.2, -0.05, 0.1, 0.2])
def test_reflect_zoom_is_keras_random_zoom(factor):
    x = to_input(photo_like(8, seed=2))
    layer = keras.layers.RandomZoom(height_factor=(factor, factor), fill_mode="reflect", interpolation="bilinear")
    theirs = torch.as_tensor(np.asarray(keras.ops.convert_to_numpy(layer(x.permute(0, 2, 3, 1).numpy(), training=True))))
    ours = zoom_rotate(x, torch.full((8,), 1 + factor), torch.zeros(8), "bilinear", "reflect")
    torch.testing.assert_close(ours, theirs.permute(0, 3, 1, 2), atol=1e-5, rtol=0)
    assert not torch.allclose(ours, x, atol=1e-2)


def test_zero_fill_zoom_differs_from_keras_default_at_the_border():
    x = torch.ones(1, 1, 28, 28)
    zeros = zoom_rotate(x, torch.full((1,), 1.2), torch.zeros(1), "bilinear", "zeros")
    reflect = zoom_rotate(x, torch.full((1,), 1.2), torch.zeros(1), "bilinear", "reflect")
    assert zeros[0, 0, 0, 0] == 0 and torch.allclose(reflect, x)


@pytest.mark.parametrize("n,seed,fraction", [(60_000, 42, 0.1), (1_000, 43, 0.1), (37, 7, 0.1), (60_000, 42, 0.07),
                                             (100, 1, 0.33), (1_000, 2, 0.015)])
def test_random_split_is_train_test_split(n, seed, fraction):
    kept, held = random_split(n, fraction, seed)
    their_kept, their_held = train_test_split(np.arange(n), test_size=fraction, random_state=seed, shuffle=True)
    assert kept.tolist() == their_kept.tolist() and held.tolist() == their_held.tolist()


def test_seed_recipe_split_is_unstratified_and_the_default_stratified():
    class Data:  # 60,000 labels, as Fashion-MNIST: 6,000 a class
        train_labels = torch.arange(60_000) % 10
        train_images = torch.zeros(60_000, 1, 1, dtype=torch.uint8)
        test_images, test_labels = torch.zeros(1, 1, 1, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)

    rand = make_splits(Data, TrainConfig(val_split="random"), torch.device("cpu"))
    strat = make_splits(Data, TrainConfig(), torch.device("cpu"))
    assert len(rand.val_y) == len(strat.val_y) == 6_000 and len(rand.train_y) == 54_000
    assert torch.bincount(strat.val_y).tolist() == [600] * 10
    assert torch.bincount(rand.val_y).tolist() != [600] * 10
