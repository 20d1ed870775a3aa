"""Grad-CAM (Selvaraju et al. 2017) for the CNNs: where the last convolutional features that raise
the target class's logit lie.

The target layer is the model's own choice (`CAM_LAYER`, a module name: the study CNN's
`features`, the ResNet's `stages`), else its last `nn.Conv2d`. Models that average the logits
over test-time views (`tta_flip`: the image and its mirror image; `tta_shift`: 1-pixel shifts) run
them in one batch; their maps are averaged with the views' weights after mirroring the mirrored ones
back, so the map explains the prediction the model actually makes.
"""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.models.layers import merge_maps


def target_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) whose output Grad-CAM weighs: `model.CAM_LAYER`, else the last Conv2d."""
    name = getattr(model, "CAM_LAYER", None)
    if name is not None:
        return name, model.get_submodule(name)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer and names no CAM_LAYER: Grad-CAM needs one")
    return convs[-1]


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM maps (B, h, w) >= 0 at the target layer's resolution for float input x (B, 1, H, W)
    and target classes (B,) (default: the predicted ones). Parameters get no gradient."""
    _, layer = target_layer(model)
    acts: list[torch.Tensor] = []
    me = threading.get_ident()       # another thread may run the same layer meanwhile (a served model)
    handle = layer.register_forward_hook(lambda m, i, out: acts.append(out) if threading.get_ident() == me else None)
    try:
        with torch.enable_grad():
            logits = model(x)                                          # (B, classes)
            target = logits.argmax(1) if target is None else target
            score = logits.gather(1, target[:, None]).sum()
            (a,) = acts
            (g,) = torch.autograd.grad(score, a)                       # (B', C, h, w), B' = B x views
    finally:
        handle.remove()
    weights = g.mean(dim=(2, 3), keepdim=True)                         # (B', C, 1, 1): pooled gradients
    cam = F.relu((weights * a).sum(1)).detach()                        # (B', h, w)
    return merge_maps(model, cam, x.shape[0])                          # one map per image over the views
