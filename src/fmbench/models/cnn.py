"""The study's CNN: two conv blocks and a small dense head (Keras layer order and defaults)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fmbench.errors import ConfigError


@dataclass(frozen=True)
class CNNSeedConfig:
    """The study's CNN. Conv widths, dense width, dropout and the Keras-style L2 factor."""

    conv1: int = 64
    conv2: int = 128
    dense: int = 128
    dropout: float = 0.5
    dense_l2: float = 1e-3   # Keras kernel_regularizer=l2(f): adds f * sum(W**2) to the loss
    num_classes: int = 10
    bn_momentum: float = 0.01  # PyTorch convention (weight of the new batch); 0.01 = Keras momentum 0.99

    def __post_init__(self) -> None:
        if min(self.conv1, self.conv2, self.dense) < 1:
            raise ConfigError("conv1, conv2 and dense must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dense_l2 < 0:
            raise ConfigError(f"dense_l2 must be >= 0, got {self.dense_l2}")
        if not 0 < self.bn_momentum <= 1:
            raise ConfigError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")


class ConvBlock(nn.Sequential):
    """Conv 3x3 ('valid' padding) + ReLU -> BatchNorm -> MaxPool 2x2, as the study's Keras model."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float = 0.01) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(c_out, eps=1e-3, momentum=bn_momentum),  # Keras defaults: eps 1e-3, momentum 0.99
            nn.MaxPool2d(2),
        )


class CNNSeed(nn.Module):
    """28x28x1 -> ConvBlock(64) -> ConvBlock(128) -> Dropout -> Dense(128) -> Dense(10)."""

    # Grad-CAM reads the last convolution (11x11, before pooling): on the 500-image deletion test its
    # maps beat the pooled 5x5 block output's (AUC 0.339 vs 0.385; explain/gradcam.py).
    CAM_LAYER = "features.1.0"

    def __init__(self, cfg: CNNSeedConfig = CNNSeedConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = nn.Sequential(ConvBlock(1, cfg.conv1, cfg.bn_momentum),
                                      ConvBlock(cfg.conv1, cfg.conv2, cfg.bn_momentum))
        # 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5
        self.dropout = nn.Dropout(cfg.dropout)
        self.dense = nn.Linear(cfg.conv2 * 5 * 5, cfg.dense)
        self.head = nn.Linear(cfg.dense, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                      # (B, 128, 5, 5)
        # Keras flattens channels-last (H, W, C); the order does not change what can be learned.
        x = torch.flatten(x, 1)                   # (B, 3200)
        x = torch.relu(self.dense(self.dropout(x)))
        return self.head(x)                       # (B, 10) logits; softmax lives in the loss

    def regularization_loss(self) -> torch.Tensor:
        """The Keras L2 penalty on the dense layer's kernel, added to the training loss."""
        return self.cfg.dense_l2 * self.dense.weight.pow(2).sum()
