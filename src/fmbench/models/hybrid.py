"""A hybrid of the two families, after the Compact Convolutional Transformer (CCT; Hassani et al.
2021, "Escaping the Big Data Paradigm with Compact Transformers"):

    image -> ConvTokenizer -> + 2D sin-cos positions -> pre-norm Blocks -> LayerNorm -> SeqPool -> head

- ConvTokenizer: CCT's `Tokenizer` as its `_cct` builds it for kernel 3 (SHI-Labs/Compact-Transformers,
  src/utils/tokenizer.py and src/cct.py): `n x [Conv2d(3x3, stride 1, padding 1, bias=False) -> ReLU
  -> MaxPool2d(3, stride 2, padding 1)]`, widths `[1, 64, ..., dim]` (`in_planes=64`), Kaiming-normal
  weights. Two stages take 28x28 to 7x7: 49 tokens, as many as `vit_best`'s 4x4 patches.
- SeqPool: CCT's sequence pooling after the final LayerNorm, `x = torch.matmul(F.softmax(
  self.attention_pool(x), dim=1).transpose(-1, -2), x).squeeze(-2)` (src/utils/transformers.py).
- Blocks: `vit_best`'s transformer (models/vit.py `Block`, pre-norm: dim 128, 4 heads, MLP 256,
  6 layers) and its 2D sin-cos positions, not CCT's own encoder layer (which normalises again after
  the attention residual) or its 1D positions.

So `hybrid_best` differs from `vit_best` only where the image becomes tokens and how the tokens are
pooled: the middle ground between the two families. Its rollout explanation averages every token's
row, as for `vit_best`'s mean pooling; Grad-CAM, when asked for, weighs the tokenizer's 7x7 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fmbench.errors import ConfigError
from fmbench.models.layers import FlipAveraged
from fmbench.models.vit import Block, ViTBestConfig, sincos_2d


@dataclass(frozen=True)
class HybridConfig(ViTBestConfig):
    """`hybrid_best`: `vit_best`'s transformer on a CCT tokenizer (`conv_layers` 3x3 conv + max-pool
    stages, the inner ones `conv_width` wide, the last `dim`), sequence pooling, flip TTA."""

    conv_layers: int = 2
    conv_width: int = 64
    pool: str = "seq"        # CCT's sequence pooling

    POOLS = ("seq",)
    LEGACY_DEFAULTS = {}   # every hybrid run records all its fields

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spt:
            raise ConfigError("spt shifts a ViT's patches; the hybrid's tokens come from its convolutions (leave spt off)")
        if not 1 <= self.conv_layers <= 4 or self.conv_width < 1:
            raise ConfigError(f"conv_layers must be 1-4 and conv_width >= 1, got {self.conv_layers} and {self.conv_width}")

    @property
    def side(self) -> int:
        """The token grid's side: each stage's max-pool (3, stride 2, padding 1) halves it, rounding up."""
        side = self.image_size
        for _ in range(self.conv_layers):
            side = (side - 1) // 2 + 1
        return side


class ConvTokenizer(nn.Sequential):
    """`n` x [Conv3x3 (no bias) -> ReLU -> MaxPool(3, 2, 1)]: (B, 1, H, W) -> (B, N, dim) tokens."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__(*[nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.ReLU(),
                                         nn.MaxPool2d(3, stride=2, padding=1))
                           for a, b in zip(widths, widths[1:])])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(2).transpose(1, 2)   # (B, C, h, w) -> (B, h*w, C)


class SeqPool(nn.Module):
    """CCT's sequence pooling: a learned softmax weight per token, then the weighted sum."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention_pool = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.attention_pool(x).softmax(1)                 # (B, N, 1)
        return (w.transpose(1, 2) @ x).squeeze(1)             # (B, D)


class Hybrid(FlipAveraged):
    """Image (B, 1, 28, 28) -> logits (B, num_classes)."""

    def __init__(self, cfg: HybridConfig = HybridConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = ConvTokenizer([1] + [cfg.conv_width] * (cfg.conv_layers - 1) + [cfg.dim])
        self.CAM_LAYER = f"tokenizer.{cfg.conv_layers - 1}"   # Grad-CAM, when asked for: the token grid (B, dim, 7, 7)
        self.register_buffer("pos_embed", sincos_2d(cfg.side, cfg.side, cfg.dim)[None], persistent=False)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.Sequential(*[Block(cfg, r) for r in rates])
        self.norm = nn.LayerNorm(cfg.dim)
        self.pool = SeqPool(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(x) + self.pos_embed                   # (B, N, D)
        x = self.norm(self.blocks(x))
        return self.head(self.pool(x))                           # (B, classes)
