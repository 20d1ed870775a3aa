"""In-memory splits, batches as index slices, and augmentation of whole batches with tensor ops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fmbench.config import TrainConfig
from fmbench.errors import ConfigError


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held_out) with `fraction` of every class held out, from a seed."""
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def random_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) indices exactly as sklearn's `train_test_split(range(n), test_size=fraction,
    random_state=seed, shuffle=True)`: a NumPy RandomState(seed) permutation, the first
    ceil(fraction * n) held out and the rest kept (not stratified), in permutation order."""
    import numpy as np

    n_held = math.ceil(fraction * n)             # sklearn: test = ceil(test_size * n), train = the rest
    perm = torch.from_numpy(np.random.RandomState(seed).permutation(n))
    return perm[n_held:], perm[:n_held]


def stratified_subset(indices: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` of `indices`, with the class proportions of the whole (for fast experiments)."""
    if n <= 0 or n >= len(indices):
        return indices
    _, chosen = stratified_split(labels[indices], n / len(indices), seed)
    return indices[chosen]


@dataclass(frozen=True)
class Splits:
    """Train / validation / test as uint8 images (N, 28, 28) and int64 labels, on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def of(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the split called "train", "val" or "test"."""
        return {"train": (self.train_x, self.train_y), "val": (self.val_x, self.val_y),
                "test": (self.test_x, self.test_y)}[name]


def make_splits(ds, cfg: TrainConfig, device: torch.device) -> Splits:
    """Hold out a validation set (seeded; stratified, or as train_test_split), optionally subsample
    train; test stays whole."""
    if cfg.val_split == "random":
        train_idx, val_idx = random_split(len(ds.train_labels), cfg.val_fraction, cfg.seed)
    else:
        train_idx, val_idx = stratified_split(ds.train_labels, cfg.val_fraction, cfg.seed)
    train_idx = stratified_subset(train_idx, ds.train_labels, cfg.train_size, cfg.seed)
    if len(val_idx) == 0 or len(train_idx) < 2:
        raise ConfigError(f"{len(ds.train_labels)} training images give {len(train_idx)} train and {len(val_idx)} "
                          f"validation images with val_fraction={cfg.val_fraction}; both must be non-empty")
    to = lambda t: t.to(device)  # noqa: E731
    return Splits(
        to(ds.train_images[train_idx]), to(ds.train_labels[train_idx]),
        to(ds.train_images[val_idx]), to(ds.train_labels[val_idx]),
        to(ds.test_images), to(ds.test_labels),
    )


def to_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1]."""
    x = images.unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def zoom_rotate(x: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor, interp: str = "bilinear",
                fill: str = "zeros") -> torch.Tensor:
    """One affine resample of a batch (B, C, H, W) about the image centre: per-sample `scale` (> 1
    shows a larger area, i.e. zooms out, as Keras RandomZoom's factor) and rotation by `angle`
    radians counter-clockwise (as PIL's Image.rotate and torchvision's RandomRotation)."""
    # theta maps output coordinates to input coordinates (x right, y down, in [-1, 1]).
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # align_corners=False: "reflection" mirrors about the image's edge (d c b a | a b c d, Keras'
    # "reflect"), and "nearest" takes the pixel under each output pixel's centre (PIL's rotate).
    return F.grid_sample(x, grid, mode=interp, padding_mode="reflection" if fill == "reflect" else "zeros",
                         align_corners=False)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random flips, zoom, rotation, shift and erasing of a float batch (B, 1, H, W), on its device."""
    B, _, H, W = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    if cfg.aug_hflip > 0:
        x = torch.where((rand(B) < cfg.aug_hflip).view(B, 1, 1, 1), x.flip(3), x)
    if cfg.aug_vflip > 0:
        x = torch.where((rand(B) < cfg.aug_vflip).view(B, 1, 1, 1), x.flip(2), x)
    if cfg.aug_zoom > 0 or cfg.aug_rotation > 0:
        scale = 1 + (2 * rand(B) - 1) * cfg.aug_zoom
        angle = (2 * rand(B) - 1) * math.radians(cfg.aug_rotation)
        x = zoom_rotate(x, scale, angle, cfg.aug_interp, cfg.aug_fill)
    if cfg.aug_translate > 0:
        # Pad-and-crop shift by up to `t` pixels: roll a zero-padded batch, per sample offsets.
        t = cfg.aug_translate
        padded = F.pad(x, (t, t, t, t))
        dy = torch.randint(0, 2 * t + 1, (B,), generator=gen, device=dev)
        dx = torch.randint(0, 2 * t + 1, (B,), generator=gen, device=dev)
        rows = (dy.view(B, 1) + torch.arange(H, device=dev)).view(B, 1, H, 1).expand(B, x.shape[1], H, W + 2 * t)
        padded = padded.gather(2, rows)
        cols = (dx.view(B, 1) + torch.arange(W, device=dev)).view(B, 1, 1, W).expand(B, x.shape[1], H, W)
        x = padded.gather(3, cols)
    if cfg.aug_erase > 0:
        # Random erasing: one rectangle per chosen sample, 2-33% of the area, aspect in [0.3, 3.3].
        area = (0.02 + 0.31 * rand(B)) * H * W
        aspect = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * rand(B))
        h = (area * aspect).sqrt().clamp(1, H)
        w = (area / aspect).sqrt().clamp(1, W)
        y0 = rand(B) * (H - h)
        x0 = rand(B) * (W - w)
        ys = torch.arange(H, device=dev).view(1, H, 1)
        xs = torch.arange(W, device=dev).view(1, 1, W)
        box = ((ys >= y0.view(B, 1, 1)) & (ys < (y0 + h).view(B, 1, 1))
               & (xs >= x0.view(B, 1, 1)) & (xs < (x0 + w).view(B, 1, 1)))
        box &= (rand(B) < cfg.aug_erase).view(B, 1, 1)
        x = x.masked_fill(box.unsqueeze(1), 0.0)
    return x
