"""Reusable layers: a dropout that is fast on CPU, and test-time views (flips, 1-pixel shifts) averaged by
`FlipAveraged`, the base of the models that offer them.

`nn.Dropout` on CPU draws one Bernoulli sample per element from the Mersenne Twister (~10-15 ns
each, one thread): in the study's ViT that was ~70% of a training step. `keep_mask` draws 64 random
bits per 4 elements and compares each 16-bit lane with a threshold (~1.5 ns per element in all).

Statistically this is the usual dropout: every element is kept independently with probability
`k / 65536`, `k = round((1 - p) * 65536)`, and survivors are scaled by `65536 / k`, so the
expectation is exact. The only difference is that p is quantised to 1/65536: for p = 0.2 the
drop probability is 0.199997. On other devices `F.dropout` is already fast and is used instead.
The fused C versions (GELU or softmax with dropout, ReLU/BatchNorm/pool) are in fmbench/kernels/ops.py;
engine/fuse.py swaps them in when the engine runs a model on CPU; models here never call them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LANES = 1 << 16


def keep_scale(p: float) -> float:
    """The factor survivors are multiplied by: 1 / (exact keep probability)."""
    return LANES / round((1 - p) * LANES)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device,
              generator: torch.Generator | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """A (shape) tensor of 0s and 1s, each 1 with probability 1 - p (quantised to 1/65536).

    Uses the default generator unless one is given, so `torch.manual_seed` makes it repeatable
    and `torch.get_rng_state` captures it (as for nn.Dropout).
    """
    if p == 0:
        return torch.ones(shape, dtype=dtype, device=device) if out is None else out.fill_(1)
    n = math.prod(shape)
    # from=-2**63, to=None: the full 64-bit range. random_() without arguments leaves the top bit
    # at 0, which would make every fourth 16-bit lane non-uniform.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None, generator=generator)
    lanes = bits.view(torch.int16)[:n].view(shape)           # uniform over [-32768, 32767]
    threshold = round((1 - p) * LANES) - LANES // 2
    # lt with a float `out` writes 0/1 directly in the activation dtype (a bool mask would need a
    # slow conversion, and bool * float takes PyTorch's slow mixed-dtype path).
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=device)
    return torch.lt(lanes, threshold, out=out)


class FastDropout(nn.Dropout):
    """Drop-in `nn.Dropout` (same p, same statistics; see the module docstring) that is fast on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.inplace:
            return F.dropout(x, self.p, True, self.inplace)
        return x * keep_mask(x.shape, self.p, x.dtype, x.device).mul_(keep_scale(self.p))


# A test-time view: (its weight, whether it is mirrored, its shift: 0, 1 = one pixel down-and-right,
# -1 = one pixel up-and-left). Views are stacked in this order in one batch.
View = tuple[float, bool, int]


def tta_views(flip: bool, shift: bool) -> tuple[View, ...]:
    """The views `FlipAveraged` averages: the image, and with `shift` its 1-pixel shifts down-right and
    up-left at a quarter each (airbench94's `tta_level=2`), each followed by its mirror image with `flip`."""
    bases = ((1.0, 0),) if not shift else ((0.5, 0), (0.25, 1), (0.25, -1))
    return tuple(v for w, s in bases for v in (((w / 2, False, s), (w / 2, True, s)) if flip else ((w, False, s),)))


def view_batch(x: torch.Tensor, views: tuple[View, ...]) -> torch.Tensor:
    """The views of x (B, C, H, W) stacked into one batch (len(views) * B, C, H, W), in `views`' order;
    shifted views come from a 1-pixel reflect padding (airbench94's `infer`)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect") if any(s for _, _, s in views) else x

    def view(mirrored: bool, s: int) -> torch.Tensor:
        v = x if s == 0 else padded[..., 1 - s:1 - s + h, 1 - s:1 - s + w]
        return v.flip(-1) if mirrored else v
    return torch.cat([view(m, s) for _, m, s in views])


def merge_views(out: torch.Tensor, batch: int, views: tuple[View, ...] | None = None,
                unflip: bool = False) -> torch.Tensor:
    """The weighted mean over views of outputs (len(views) * batch, ...); with `unflip`, maps of mirrored
    views are mirrored back first (the explainers; a shifted view's map is averaged as it is, its
    1-pixel shift being under one cell of a feature map). Without `views`, they are read from the
    count: one view, or an image and its mirror image."""
    if views is None:
        views = tta_views(flip=out.shape[0] == 2 * batch, shift=False)
    if out.shape[0] != len(views) * batch:
        raise ValueError(f"expected {len(views)} views of {batch} images, got {out.shape[0]} outputs")
    parts = [out[i * batch:(i + 1) * batch] for i in range(len(views))]   # slices: ONNX keeps the batch dynamic
    return sum(w * (p.flip(-1) if m and unflip else p) for p, (w, m, _) in zip(parts, views))


def merge_maps(model: nn.Module, maps: torch.Tensor, batch: int) -> torch.Tensor:
    """One explanation map per image from a model that ran its test-time views in one batch (Grad-CAM,
    rollout): `merge_views` over the model's `views()` (by count for a model without them), with the
    mirrored views' maps mirrored back."""
    return merge_views(maps, batch, model.views() if hasattr(model, "views") else None, unflip=True)


class FlipAveraged(nn.Module):
    """A classifier of (B, 1, S, S) images (S = `cfg.image_size`, else 28) whose network is `_logits`:
    in eval mode it averages the logits over test-time views, each image and its mirror image with
    `cfg.tta_flip`, and 1-pixel shifts with `cfg.tta_shift` (`tta_views`); one batched pass."""

    def views(self) -> tuple[View, ...]:
        """The test-time views this model averages in eval mode."""
        return tta_views(self.cfg.tta_flip, getattr(self.cfg, "tta_shift", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = getattr(self.cfg, "image_size", 28)
        if tuple(x.shape[1:]) != (1, size, size):
            raise ValueError(f"expected input (B, 1, {size}, {size}), got {tuple(x.shape)}")
        views = self.views()
        if self.training or len(views) == 1:
            return self._logits(x)
        return merge_views(self._logits(view_batch(x, views)), x.shape[0], views)
