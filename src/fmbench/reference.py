"""The yardstick for `fmbench bench`: how a typical tutorial trains the study's models in plain PyTorch.

A `Dataset` that augments one image at a time with tensor ops, a `DataLoader` (shuffle, batch 1024
for the CNN and 256 for the ViT), fp32, contiguous tensors, Adam, `nn.Dropout` and
`nn.TransformerEncoderLayer`. Nothing is crippled: the augmentations are the study's (flips and a
20% zoom for the CNN, the tutorial's 15 degree rotation for the ViT), done the way a tutorial without
torchvision does them (`affine_grid` + `grid_sample` per image).

`num_workers=0`: the benchmark machine has 2 cores, and PyTorch's intra-op threads already use
both; a loader worker process would compete with them for the same cores (and adds start-up and
inter-process copies), so the tutorial default of an in-process loader is the honest choice here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader


class AugmentedImages(torch.utils.data.Dataset):
    """uint8 images (N, 28, 28) -> (float image (1, 28, 28) in [0, 1], label), augmented per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, flips: bool = False,
                 zoom: float = 0.0, rotation: float = 0.0) -> None:
        self.images, self.labels = images, labels
        self.flips, self.zoom, self.rotation = flips, zoom, rotation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i].float().div(255).unsqueeze(0)                  # (1, 28, 28)
        if self.flips:
            if torch.rand(()) < 0.5:
                img = img.flip(2)
            if torch.rand(()) < 0.5:
                img = img.flip(1)
        if self.zoom or self.rotation:
            s = 1 + (2 * torch.rand(()).item() - 1) * self.zoom               # Keras RandomZoom
            a = math.radians((2 * torch.rand(()).item() - 1) * self.rotation)
            theta = torch.tensor([[s * math.cos(a), -s * math.sin(a), 0.0],
                                  [s * math.sin(a), s * math.cos(a), 0.0]]).unsqueeze(0)
            grid = F.affine_grid(theta, [1, 1, 28, 28], align_corners=False)
            img = F.grid_sample(img.unsqueeze(0), grid, align_corners=False).squeeze(0)
        return img, self.labels[i]


def reference_cnn() -> nn.Module:
    """The study's CNN as a tutorial writes it (Keras layer order: conv, ReLU, BatchNorm, pool)."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 3), nn.ReLU(), nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.BatchNorm2d(128, eps=1e-3, momentum=0.01), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class ReferenceViT(nn.Module):
    """The study's ViT as a tutorial writes it: conv patchify, [cls] + learned positions, nn.TransformerEncoder."""

    def __init__(self, dim: int = 16, depth: int = 6, heads: int = 8, mlp_dim: int = 2048, dropout: float = 0.2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, kernel_size=4, stride=4)            # 28x28 -> 7x7 patches
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 50, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)                         # (B, 49, dim)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos   # (B, 50, dim)
        return self.head(self.encoder(self.drop(x))[:, 0])


@dataclass
class Reference:
    """A model, its optimizer, the training loader and the extra loss term, as the tutorial builds them."""

    model: nn.Module
    opt: torch.optim.Optimizer
    loader: DataLoader
    batch_size: int
    l2: float = 0.0          # Keras-style L2 on the CNN's dense kernel, added to the loss

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches forever: one shuffled pass of the loader after another."""
        while True:
            yield from self.loader


REFERENCES = ("cnn_seed", "vit_seed")


def make_reference(name: str, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> Reference:
    """The tutorial setup for `cnn_seed` or `vit_seed` on the given training images."""
    torch.manual_seed(seed)
    if name == "cnn_seed":
        model, bs = reference_cnn(), 1024
        data = AugmentedImages(images, labels, flips=True, zoom=0.2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        l2 = 1e-3
    elif name == "vit_seed":
        model, bs = ReferenceViT(), 256
        data = AugmentedImages(images, labels, rotation=15.0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
        l2 = 0.0
    else:
        raise ValueError(f"no reference loop for {name!r}; available: {', '.join(REFERENCES)}")
    loader = DataLoader(data, batch_size=bs, shuffle=True, num_workers=0)
    return Reference(model, opt, loader, bs, l2)


def train_steps(ref: Reference, batches: Iterator, steps: int) -> int:
    """`steps` optimizer steps of the tutorial loop; returns the number of images seen."""
    ref.model.train()
    seen = 0
    for _ in range(steps):
        xb, yb = next(batches)
        loss = F.cross_entropy(ref.model(xb), yb)
        if ref.l2:
            loss = loss + ref.l2 * ref.model[10].weight.pow(2).sum()   # the dense layer's kernel
        ref.opt.zero_grad()
        loss.backward()
        ref.opt.step()
        seen += len(yb)
    return seen
