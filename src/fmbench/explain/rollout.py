"""Attention rollout (Abnar & Zuidema 2020) for the ViTs, and the last layer's raw attention.

Rollout: per layer, average the heads, add the identity (the residual path), renormalise the rows,
and multiply through the layers; the class token's row (or, for a mean-pooled ViT, the mean of
all rows) says how much each patch flows into the representation that is classified.

The ViT computes attention with `scaled_dot_product_attention`, which never materialises the
probabilities; `recorded_attention` switches each `Attention` to its explicit path for one call
(`Attention.record`), so the fast path stays the default.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from fmbench.models.layers import merge_maps


@contextmanager
def recorded_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect every attention layer's probabilities (B, heads, N, N), in layer order."""
    layers = [m for m in model.modules() if hasattr(m, "record") and hasattr(m, "attention_probs")]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no attention layers that can record their probabilities")
    for m in layers:
        m.record, m.attention_probs = True, None
    probs: list[torch.Tensor] = []
    try:
        yield probs
        probs.extend(m.attention_probs for m in layers)
    finally:
        for m in layers:
            m.record, m.attention_probs = False, None


def _grid(scores: torch.Tensor, has_cls: bool) -> torch.Tensor:
    """Per-token scores (B, N) -> patch grid (B, side, side), dropping the class token."""
    patches = scores[:, 1:] if has_cls else scores
    side = int(round(patches.shape[1] ** 0.5))
    return patches.reshape(-1, side, side)


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention probabilities (B', heads, N, N) for input x (B, 1, H, W)."""
    with recorded_attention(model) as probs:
        model(x)
    return probs


def rollout(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout over the patch grid, (B, side, side) >= 0."""
    probs = attention_maps(model, x)
    n = probs[0].shape[-1]
    eye = torch.eye(n, dtype=probs[0].dtype, device=probs[0].device)
    r = eye.expand(probs[0].shape[0], n, n)
    for a in probs:
        a = a.mean(1) + eye                                 # (B', N, N): heads averaged, plus the residual
        a = a / a.sum(-1, keepdim=True)                     # rows sum to 1 again
        r = a @ r                                           # flow from the input tokens through this layer
    has_cls = getattr(model, "cls_token", None) is not None
    scores = r[:, 0] if has_cls else r.mean(1)              # (B', N): the class token's row, or all rows
    return merge_maps(model, _grid(scores, has_cls), x.shape[0])


def last_layer_heads(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last layer's attention per head from the class token (or averaged over tokens), (B, heads, side, side)."""
    a = attention_maps(model, x)[-1]                        # (B', heads, N, N)
    has_cls = getattr(model, "cls_token", None) is not None
    rows = a[:, :, 0] if has_cls else a.mean(2)             # (B', heads, N)
    B2, heads, n = rows.shape
    grid = _grid(rows.reshape(B2 * heads, n), has_cls)      # (B' * heads, side, side)
    grid = grid.reshape(B2, heads, *grid.shape[1:])
    return merge_maps(model, grid, x.shape[0])
