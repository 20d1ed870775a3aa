"""`cnn_resnet20`: He et al.'s CIFAR ResNet (depth 6n + 2), the network behind the Random Erasing
paper's Fashion-MNIST table (Zhong et al. 2017: ResNet-20, 4.39% test error, 4.02% with erasing).

    conv 3x3 (w) -> BN -> ReLU -> [Block(w) x n] -> [Block(2w) x n] -> [Block(4w) x n] -> GAP -> Linear
    Block: conv 3x3 (stride s) -> BN -> ReLU -> conv 3x3 -> BN, + shortcut, -> ReLU

The three stages run at 28x28, 14x14 and 7x7: each later stage's first block halves the resolution
with a stride-2 convolution and its shortcut is a 1x1 stride-2 convolution with BatchNorm (the
paper's code, `models/fashion/resnet.py`, built from pytorch-classification's CIFAR ResNet). Unlike
`cnn_best` (models/resnet.py), which pools first and keeps its width for small maps, most of this
network's 0.27M parameters and its convolutions work at full and half resolution. That code switches
to bottleneck blocks from depth 44; this module builds the basic-block depths only (8 to 38).
Convolutions start as that code starts them (normal, std sqrt(2 / (9 * c_out)): Kaiming's fan-out).
Test-time views (`tta_flip`, `tta_shift`) as for `cnn_best` (models/layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fmbench.errors import ConfigError
from fmbench.models.layers import FlipAveraged


@dataclass(frozen=True)
class CifarResNetConfig:
    """Depth (6n + 2: n blocks a stage), the first stage's width, and the test-time views averaged."""

    depth: int = 20
    width: int = 16           # stages at width, 2 x width and 4 x width channels
    tta_flip: bool = True     # eval only: average the logits of x and x.flip(-1)
    tta_shift: bool = False   # eval only: and of x shifted 1 pixel both ways
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.depth < 8 or self.depth >= 44 or (self.depth - 2) % 6:
            raise ConfigError(f"depth must be 6n + 2 between 8 and 38 (basic blocks; the paper's code builds "
                              f"bottleneck blocks from 44), got {self.depth}")
        if self.width < 1:
            raise ConfigError(f"width must be >= 1, got {self.width}")


class Block(nn.Module):
    """conv 3x3 (stride) -> BN -> ReLU -> conv 3x3 -> BN, plus the shortcut, then ReLU (ResNet's basic block)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(FlipAveraged):
    """Image (B, 1, 28, 28) -> logits (B, num_classes)."""

    CAM_LAYER = "stages"   # Grad-CAM reads the last stage's output, as for cnn_best (explain/gradcam.py)

    def __init__(self, cfg: CifarResNetConfig = CifarResNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        n, w = (cfg.depth - 2) // 6, cfg.width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        stages, c_in = [], w
        for i, c in enumerate((w, 2 * w, 4 * w)):                           # 28x28, 14x14, 7x7
            stages += [Block(c_in if j == 0 else c, c, 2 if i and j == 0 else 1) for j in range(n)]
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(4 * w, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))                                        # (B, 4w, 7, 7)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
