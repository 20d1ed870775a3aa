"""Where a model looks: saliency maps for every registered model, and how faithful they are.

    saliency(model, family, images)  (B, 28, 28) maps in [0, 1], one per image
    METHODS                          "gradcam" (CNNs), "rollout" and "attention" (ViTs); the hybrid takes all three

Grad-CAM (gradcam.py) explains a CNN's prediction through its last convolutional features;
attention rollout (rollout.py) follows the ViT's attention through its layers; "attention" is
the last layer's class-token attention averaged over heads (`head_maps` gives each head). The
hybrid (models/hybrid.py) has both a convolutional tokenizer and attention: rollout by default,
Grad-CAM on its tokenizer's output when asked.
faithfulness.py measures whether a map means anything (deletion curves, weight randomisation);
record.py writes a run's explanations into its directory for the report.
"""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.errors import ConfigError

METHODS = {"gradcam": ("cnn", "hybrid"), "rollout": ("vit", "hybrid"), "attention": ("vit", "hybrid")}  # -> the families it explains
DEFAULT_METHOD = {"cnn": "gradcam", "vit": "rollout", "hybrid": "rollout"}
SIZE = 28
# Grad-CAM hooks a layer and rollout switches the attention layers to recording: both change the
# module for one call, so explanations of a shared model (the web server's threads) run one at a time.
_EXPLAINING = threading.Lock()


def choose_method(family: str, method: str | None = None, model: str = "the model") -> str:
    """The method to explain a model of `family` with (its default when None); a mismatch is a ConfigError."""
    if family not in DEFAULT_METHOD:
        raise ConfigError(f"cannot explain {model}: unknown model family {family!r} "
                          f"(fmbench explains {', '.join(DEFAULT_METHOD)})")
    method = method or DEFAULT_METHOD[family]
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose from {', '.join(METHODS)}")
    if family not in METHODS[method]:
        from fmbench.models import FAMILIES

        explained = " and ".join(f"{FAMILIES[f]}s" for f in METHODS[method])
        raise ConfigError(f"method {method} explains {explained}, but {model} is a "
                          f"{FAMILIES[family]}; use {DEFAULT_METHOD[family]}")
    return method


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 28, 28) -> the models' float input (B, 1, 28, 28) in [0, 1]."""
    return images[:, None].float().div(255) if images.dtype == torch.uint8 else images


def upsample(maps: torch.Tensor) -> torch.Tensor:
    """Maps (B, h, w) -> (B, 28, 28), bilinear, each scaled to [0, 1] (min-max, as pytorch-grad-cam; a
    constant map becomes all zeros)."""
    maps = F.interpolate(maps[:, None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).amin(1)[:, None, None]
    span = (maps.flatten(1).amax(1)[:, None, None] - low).clamp_min(1e-12)
    return (maps - low) / span


def _raw(model: nn.Module, x: torch.Tensor, method: str, target: torch.Tensor | None) -> torch.Tensor:
    from fmbench.explain import gradcam, rollout

    if method == "gradcam":
        return gradcam.gradcam(model, x, target)
    if method == "rollout":
        return rollout.rollout(model, x)
    return rollout.last_layer_heads(model, x).mean(1)


def saliency(model: nn.Module, family: str, images: torch.Tensor, method: str | None = None,
             target: torch.Tensor | None = None, batch_size: int = 250) -> torch.Tensor:
    """Maps (B, 28, 28) in [0, 1] for uint8 images (B, 28, 28) or float input (B, 1, 28, 28).

    `target` (B,) names the class Grad-CAM explains (default: the predicted class); rollout and
    attention do not depend on a class. The model runs as written, in eval mode."""
    method = choose_method(family, method)
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = as_input(images[start:start + batch_size])
        t = None if target is None else target[start:start + batch_size].to(x.device)
        with _EXPLAINING:
            raw = _raw(model, x, method, t)
        out.append(upsample(raw).cpu())
    return torch.cat(out) if out else torch.zeros(0, SIZE, SIZE)


def head_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last layer's class-token attention of each head, (B, heads, 28, 28) in [0, 1] (ViTs only)."""
    from fmbench.explain.rollout import last_layer_heads

    model.eval()
    with _EXPLAINING:
        heads = last_layer_heads(model, as_input(images))
    B, H = heads.shape[:2]
    return upsample(heads.reshape(B * H, *heads.shape[2:])).reshape(B, H, SIZE, SIZE)
