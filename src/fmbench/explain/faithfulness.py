"""Do the maps mean anything? Two checks that the explanation libraries leave to their users.

- Deletion (Petsiuk et al. 2018): blank the most salient pixels first, 5% at a time, and follow
  the true class's probability; a faithful map makes it fall faster than a random order does, so
  the area under its curve is lower.
- Model randomisation (Adebayo et al. 2018): the same architecture with random weights must
  give different maps; a map that survives randomisation shows the image, not the model.
"""

from __future__ import annotations

from typing import Callable

import torch

FRACTIONS = torch.linspace(0, 1, 21)      # 0%, 5%, ..., 100% of the pixels removed
BACKGROUND = 0                             # Fashion-MNIST's background is black


def _delete_in_order(images: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """Images (N, 28, 28) uint8 with the first `k` pixels of each row of `order` (N, 784) blanked."""
    flat = images.reshape(len(images), -1).clone()
    flat.scatter_(1, order[:, :k], BACKGROUND)
    return flat.reshape(images.shape)


def deletion_curve(prob_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                   order: torch.Tensor) -> torch.Tensor:
    """Mean true-class probability after removing each fraction in FRACTIONS of pixels in `order`.
    `prob_of(images)` returns the (N, classes) probabilities of uint8 images."""
    n_pixels = order.shape[1]
    curve = []
    for f in FRACTIONS.tolist():
        probs = prob_of(_delete_in_order(images, order, round(f * n_pixels)))
        curve.append(probs.gather(1, labels[:, None].to(probs.device)).mean().item())
    return torch.tensor(curve)


def auc(curve: torch.Tensor) -> float:
    """Area under a curve sampled at FRACTIONS (trapezoid rule; 0 to 1)."""
    return float(torch.trapezoid(curve, FRACTIONS))


def deletion(prob_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
             maps: torch.Tensor, seed: int = 0) -> dict:
    """Deletion curves and their areas in saliency order and in a random order (ties broken at random)."""
    g = torch.Generator().manual_seed(seed)
    flat = maps.reshape(len(maps), -1).float()
    noise = torch.rand(flat.shape, generator=g) * 1e-6
    by_saliency = torch.argsort(flat + noise, dim=1, descending=True)
    at_random = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
    sal = deletion_curve(prob_of, images, labels, by_saliency)
    rnd = deletion_curve(prob_of, images, labels, at_random)
    return {"n": len(images), "fractions": [round(f, 2) for f in FRACTIONS.tolist()],
            "saliency_curve": [round(v, 5) for v in sal.tolist()], "random_curve": [round(v, 5) for v in rnd.tolist()],
            "saliency_auc": round(auc(sal), 5), "random_auc": round(auc(rnd), 5)}


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rank correlation of each row pair of a and b (N, D); NaN where a row is constant."""
    def ranks(v: torch.Tensor) -> torch.Tensor:
        r = torch.argsort(torch.argsort(v, dim=1), dim=1).float()
        return r - r.mean(1, keepdim=True)
    ra, rb = ranks(a.flatten(1)), ranks(b.flatten(1))
    num = (ra * rb).sum(1)
    den = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    constant = (a.flatten(1).amax(1) == a.flatten(1).amin(1)) | (b.flatten(1).amax(1) == b.flatten(1).amin(1))
    return torch.where(constant, torch.full_like(num, float("nan")), num / den)


def randomisation(trained_maps: torch.Tensor, random_maps: torch.Tensor) -> dict:
    """How alike the trained model's maps and the randomly initialised model's are (rank correlation)."""
    rho = spearman(trained_maps, random_maps)
    ok = rho[~rho.isnan()]
    return {"n": len(rho), "constant_maps": int(rho.isnan().sum()),
            "spearman_mean": round(ok.mean().item(), 4) if len(ok) else None,
            "spearman_abs_mean": round(ok.abs().mean().item(), 4) if len(ok) else None}
