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
    IDENTITY_NEUTRAL = {"tta_shift": False, "bn_scale": True, "dirac": False}

    stem: int = 32
    widths: tuple[int, int, int] = (64, 128, 256)
    dropout: float = 0.0
    tta_flip: bool = True     # eval only: average the logits of x and x.flip(-1)
    tta_shift: bool = False   # eval only: and of x shifted 1 pixel both ways (models/layers.py, tta_views)
    bn_scale: bool = True     # False: BatchNorm scales fixed at 1, only its biases learn (airbench)
    dirac: bool = False       # each conv starts as the identity on its first c_in outputs (airbench's init)
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
    """Conv 3x3 ('same', no bias) -> BatchNorm -> ReLU.

    airbench94's two changes, off by default: `bn_scale=False` fixes the BatchNorm scale at 1 (a ReLU
    network's output is unchanged by a positive scale, which the next BatchNorm removes anyway) and
    `dirac=True` starts the conv's first c_in output channels as the identity (`nn.init.dirac_`), so at
    initialisation each layer passes its input on beside its random features.
    """

    def __init__(self, c_in: int, c_out: int, bn_scale: bool = True, dirac: bool = False) -> None:
        conv, bn = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        if dirac:
            with torch.no_grad():
                nn.init.dirac_(conv.weight[:c_in])
        bn.weight.requires_grad_(bn_scale)
        super().__init__(conv, bn, nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + ConvBN(ConvBN(x)) (the ResNet-9 residual block)."""

    def __init__(self, c: int, **opts: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBN(c, c, **opts), ConvBN(c, c, **opts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stage(nn.Sequential):
    """MaxPool 2x2 -> ConvBN(c_in -> c_out) -> Residual(c_out)."""

    def __init__(self, c_in: int, c_out: int, **opts: bool) -> None:
        super().__init__(nn.MaxPool2d(2), ConvBN(c_in, c_out, **opts), Residual(c_out, **opts))


class ResNet(FlipAveraged):
    """Image (B, 1, 28, 28) -> logits (B, num_classes)."""

    # Grad-CAM reads the last stage's output, as for torchvision's layer4 (explain/gradcam.py). On the
    # 500-image deletion test (cnn_best) its maps beat the last bare Conv2d's: AUC 0.434 vs 0.486.
    CAM_LAYER = "stages"

    def __init__(self, cfg: ResNetConfig = ResNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        opts = dict(bn_scale=cfg.bn_scale, dirac=cfg.dirac)
        self.stem = ConvBN(1, cfg.stem, **opts)                    # (B, stem, 28, 28)
        self.stages = nn.Sequential(Stage(cfg.stem, w1, **opts),   # (B, w1, 14, 14)
                                    Stage(w1, w2, **opts),         # (B, w2, 7, 7)
                                    Stage(w2, w3, **opts))         # (B, w3, 3, 3)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(w3, cfg.num_classes)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, w3)
        return self.head(self.dropout(x))
