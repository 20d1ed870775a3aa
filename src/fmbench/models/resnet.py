"""`cnn_best`: a ResNet-9-style residual CNN for 28x28x1, sized for a 2-core CPU.

    Stem(conv 3x3) -> [Stage: pool 2x2 -> ConvBN -> Residual(ConvBN, ConvBN)] x 3 -> GAP -> Linear

Each stage halves the resolution first and then convolves at the lower resolution
(28 -> 14 -> 7 -> 3), so most of the compute runs on small maps with wide channels, which
is what a CPU does best. Optional test-time flip averaging (`tta_flip`) evaluates the image
and its mirror and averages the logits: Fashion-MNIST classes are left-right symmetric, and
the model was trained with horizontal flips. `tta_shift` adds 1-pixel shifts (airbench's
test-time translation), which gain this network nothing (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fmbench.errors import ConfigError
from fmbench.models.layers import FlipAveraged


@dataclass(frozen=True)
class ResNetConfig:
    """Widths of the stem and the three stages, head dropout, and the test-time views averaged."""

    # Settings added after runs were named, at the behaviour those runs had (config.config_hash).
    IDENTITY_NEUTRAL = {"tta_shift": False}

    stem: int = 32
    widths: tuple[int, int, int] = (64, 128, 256)
    dropout: float = 0.0
    tta_flip: bool = True     # eval only: average the logits of x and x.flip(-1)
    tta_shift: bool = False   # eval only: and of x shifted 1 pixel both ways (models/layers.py, tta_views)
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # config.json stores a list
        if len(self.widths) != 3:
            raise ConfigError(f"widths must have 3 entries (one per stage), got {self.widths}")
        if min(self.stem, *self.widths) < 1:
            raise ConfigError("stem and widths must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class ConvBN(nn.Sequential):
    """Conv 3x3 ('same', no bias) -> BatchNorm -> ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + ConvBN(ConvBN(x)) (the ResNet-9 residual block)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBN(c, c), ConvBN(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stage(nn.Sequential):
    """MaxPool 2x2 -> ConvBN(c_in -> c_out) -> Residual(c_out)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.MaxPool2d(2), ConvBN(c_in, c_out), Residual(c_out))


class ResNet(FlipAveraged):
    """Image (B, 1, 28, 28) -> logits (B, num_classes)."""

    # Grad-CAM reads the last stage's output, as for torchvision's layer4 (explain/gradcam.py). On the
    # 500-image deletion test (cnn_best) its maps beat the last bare Conv2d's: AUC 0.434 vs 0.486.
    CAM_LAYER = "stages"

    def __init__(self, cfg: ResNetConfig = ResNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        self.stem = ConvBN(1, cfg.stem)                    # (B, stem, 28, 28)
        self.stages = nn.Sequential(Stage(cfg.stem, w1),   # (B, w1, 14, 14)
                                    Stage(w1, w2),         # (B, w2, 7, 7)
                                    Stage(w2, w3))         # (B, w3, 3, 3)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(w3, cfg.num_classes)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, w3)
        return self.head(self.dropout(x))
