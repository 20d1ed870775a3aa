"""Seeded image corruptions at five severities, modelled on MNIST-C and Fashion-MNIST-C.

Every corruption is a pure function of (images, severity, seed): uint8 (N, 28, 28) in, uint8
(N, 28, 28) out, severity 0 the identity, the same bytes for the same arguments. Those data sets
are not reachable offline, so the corruptions are generated in memory; their parameters (below,
in SEVERITIES, per severity 1..5) follow ImageNet-C's families scaled to 28x28 grey garments on
black. Geometric ones resample bilinearly with a black border; per-image random parts (noise,
direction, angle, patch position) come from a generator seeded with (seed, corruption, severity).

| corruption      | parameter (severity 1 .. 5)                                   |
| --------------- | ------------------------------------------------------------- |
| gaussian_noise  | std of added noise: 0.04 0.08 0.12 0.18 0.26 (of full scale)  |
| shot_noise      | photons at full scale: 60 25 12 5 3 (Poisson)                 |
| impulse_noise   | share of pixels set to 0 or 255: 0.01 0.02 0.03 0.05 0.07     |
| gaussian_blur   | kernel std in pixels: 0.5 0.75 1 1.5 2                        |
| motion_blur     | streak length in pixels, random direction: 3 5 7 9 11         |
| contrast        | contrast kept around the mean: 0.6 0.45 0.3 0.2 0.1           |
| brightness      | added brightness: 0.1 0.2 0.3 0.4 0.5 (of full scale)         |
| rotate          | degrees, random sign: 10 20 30 45 60                          |
| translate       | pixels, random direction: 2 3 4 5 6                           |
| scale           | zoom out to: 0.9 0.8 0.7 0.6 0.5 of the size                  |
| shear           | horizontal shear, random sign: 0.1 0.2 0.3 0.45 0.6           |
| erase           | black square at a random place, side: 6 8 10 12 14 pixels     |
| elastic         | smooth random displacement, max pixels: 1 1.5 2 2.5 3         |
| invert          | blend towards the negative: 0.2 0.4 0.6 0.8 1                 |
"""

from __future__ import annotations

import math
import zlib
from typing import Callable

import torch
import torch.nn.functional as F

from fmbench.errors import ConfigError

SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "motion_blur": (3, 5, 7, 9, 11),
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "rotate": (10, 20, 30, 45, 60),
    "translate": (2, 3, 4, 5, 6),
    "scale": (0.9, 0.8, 0.7, 0.6, 0.5),
    "shear": (0.1, 0.2, 0.3, 0.45, 0.6),
    "erase": (6, 8, 10, 12, 14),
    "elastic": (1.0, 1.5, 2.0, 2.5, 3.0),
    "invert": (0.2, 0.4, 0.6, 0.8, 1.0),
}
CORRUPTIONS = tuple(SEVERITIES)
MAX_SEVERITY = 5


def _sign(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample (N, 1, H, W) with affine matrices theta (N, 2, 3) in normalised coordinates."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
            tx: torch.Tensor | float = 0.0, ty: torch.Tensor | float = 0.0) -> torch.Tensor:
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a, b, c, d
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    return _warp(x, theta)


def _gaussian_kernel(std: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * std))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * std ** 2))
    return k / k.sum()


def _blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), zero border."""
    k = _gaussian_kernel(std)
    r = len(k) // 2
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))


def gaussian_noise(x, p, g):
    return x + torch.randn(x.shape, generator=g) * p


def shot_noise(x, p, g):
    return torch.poisson(x * p, generator=g) / p


def impulse_noise(x, p, g):
    u = torch.rand(x.shape, generator=g)
    x = torch.where(u < p / 2, torch.zeros_like(x), x)
    return torch.where((u >= p / 2) & (u < p), torch.ones_like(x), x)


def gaussian_blur(x, p, g):
    return _blur(x, p)


def motion_blur(x, p, g):
    """Average of `p` copies shifted along a random direction per image (a linear streak)."""
    n, length = x.shape[0], int(p)
    angle = torch.rand(n, generator=g) * math.pi
    out = torch.zeros_like(x)
    for i in range(length):
        t = (i - (length - 1) / 2) * 2 / x.shape[-1]                 # pixels -> normalised units
        out += _affine(x, 1, 0, 0, 1, t * torch.cos(angle), t * torch.sin(angle))
    return out / length


def contrast(x, p, g):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * p + mean


def brightness(x, p, g):
    return x + p


def rotate(x, p, g):
    a = math.radians(p) * _sign(x.shape[0], g)
    return _affine(x, torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a))


def translate(x, p, g):
    angle = torch.rand(x.shape[0], generator=g) * 2 * math.pi
    t = p * 2 / x.shape[-1]
    return _affine(x, 1, 0, 0, 1, t * torch.cos(angle), t * torch.sin(angle))


def scale(x, p, g):
    return _affine(x, 1 / p, 0, 0, 1 / p)


def shear(x, p, g):
    return _affine(x, 1, p * _sign(x.shape[0], g), 0, 1)


def erase(x, p, g):
    n, side, size = x.shape[0], int(p), x.shape[-1]
    top = torch.randint(0, size - side + 1, (n,), generator=g)
    left = torch.randint(0, size - side + 1, (n,), generator=g)
    rows = torch.arange(size)
    inside_r = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + side)      # (N, H)
    inside_c = (rows[None] >= left[:, None]) & (rows[None] < left[:, None] + side)    # (N, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]                      # (N, 1, H, W)
    return x.masked_fill(mask, 0.0)


def elastic(x, p, g):
    """Displace each pixel by a smooth random field (Gaussian-blurred noise, std 3 px), at most `p` px."""
    n, size = x.shape[0], x.shape[-1]
    field = _blur(torch.rand(n * 2, 1, size, size, generator=g) * 2 - 1, 3.0).view(n, 2, size, size)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) * p * 2 / size
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, base + field.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def invert(x, p, g):
    return x * (1 - p) + (1 - x) * p


_FUNCTIONS: dict[str, Callable] = {name: globals()[name] for name in CORRUPTIONS}


def check(name: str, severity: int) -> None:
    """A ConfigError naming what is wrong with a corruption name or severity."""
    if name not in SEVERITIES:
        raise ConfigError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if not (isinstance(severity, int) and 0 <= severity <= MAX_SEVERITY):
        raise ConfigError(f"severity must be an integer from 0 to {MAX_SEVERITY}, got {severity!r}")


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` (N, 28, 28) uint8 with corruption `name` at `severity` (0: unchanged), as uint8."""
    check(name, severity)
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ConfigError(f"corrupt() takes uint8 images (N, H, W), got {images.dtype} {tuple(images.shape)}")
    if severity == 0:
        return images.clone()
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}/{severity}".encode()))
    x = images.cpu().float().div(255)[:, None]                                   # (N, 1, H, W) in [0, 1]
    y = _FUNCTIONS[name](x, SEVERITIES[name][severity - 1], g)
    return y[:, 0].clamp(0, 1).mul(255).round().to(torch.uint8).to(images.device)
