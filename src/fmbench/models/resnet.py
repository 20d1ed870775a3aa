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
    IDENTITY_NEUTRAL = {"tta_shift": False, "bn_scale": True, "dirac": False, "whiten": False}

    stem: int = 32
    widths: tuple[int, int, int] = (64, 128, 256)
    dropout: float = 0.0
    tta_flip: bool = True     # eval only: average the logits of x and x.flip(-1)
    tta_shift: bool = False   # eval only: and of x shifted 1 pixel both ways (models/layers.py, tta_views)
    bn_scale: bool = True     # False: BatchNorm scales fixed at 1, only its biases learn (airbench)
    dirac: bool = False       # each conv starts as the identity on its first c_in outputs (airbench's init)
    whiten: bool = False      # the stem is a frozen patch-whitening conv (airbench): needs stem=18 (2 x 3 x 3)
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # config.json stores a list
        if len(self.widths) != 3:
            raise ConfigError(f"widths must have 3 entries (one per stage), got {self.widths}")
        if min(self.stem, *self.widths) < 1:
            raise ConfigError("stem and widths must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.whiten and self.stem != Whiten.OUT:
            raise ConfigError(f"whiten makes the stem the {Whiten.OUT} whitening filters of 3x3 patches "
                              f"(each eigenvector and its negative): set stem={Whiten.OUT}, got stem={self.stem}")


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


class Whiten(nn.Sequential):
    """airbench94's first layer: a frozen 3x3 conv whose filters whiten the training images' 3x3 patches
    (the eigenvectors of their covariance, each scaled by 1 / sqrt(eigenvalue + eps), and their negatives,
    so the ReLU after it keeps both signs), then a bias and ReLU. airbench's inputs have zero mean; ours
    are in [0, 1], so the bias starts at minus each filter's response to the mean patch (then learns),
    and each output starts centred as airbench's are. `init_from_data` sets both; `engine.loop.fit`
    calls it before training on the run's first 5,000 training images (a resumed run's checkpoint
    then overwrites them with its own; a loaded run has them in its weights)."""

    SIZE = 3
    OUT = 2 * SIZE * SIZE

    def __init__(self) -> None:
        conv = nn.Conv2d(1, self.OUT, self.SIZE, padding=self.SIZE // 2, bias=True)
        conv.weight.requires_grad_(False)
        nn.init.zeros_(conv.bias)
        super().__init__(conv, nn.ReLU(inplace=True))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """x: training images as the model sees them, (N, 1, 28, 28)."""
        k, conv = self.SIZE, self[0]
        patches = nn.functional.unfold(x.float().cpu(), k).transpose(1, 2).reshape(-1, k * k).double()
        mean = patches.mean(0)                                                          # (9,)
        centred = patches - mean                                                        # (N * 26 * 26, 9)
        values, vectors = torch.linalg.eigh(centred.T @ centred / len(centred))        # ascending
        eps = eps * values.mean()          # airbench's 5e-4 is for unit-variance pixels; ours are in [0, 1]
        filters = (vectors.T / (values[:, None] + eps).sqrt()).flip(0)                  # (9, 9), strongest first
        weight = torch.cat([filters, -filters])                                         # (18, 9)
        conv.weight.copy_(weight.view(self.OUT, 1, k, k))
        conv.bias.copy_(-(weight @ mean))


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
        self.stem = Whiten() if cfg.whiten else ConvBN(1, cfg.stem, **opts)   # (B, stem, 28, 28)
        self.stages = nn.Sequential(Stage(cfg.stem, w1, **opts),   # (B, w1, 14, 14)
                                    Stage(w1, w2, **opts),         # (B, w2, 7, 7)
                                    Stage(w2, w3, **opts))         # (B, w3, 3, 3)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(w3, cfg.num_classes)

    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation before training (`whiten`); nothing otherwise."""
        if isinstance(self.stem, Whiten):
            self.stem.init_from_data(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, w3)
        return self.head(self.dropout(x))
