"""A run's explanations, written into its directory so that the report reads files, not models.

For the report's sample images (rundir.sample_indices) the map of each; per true class, the mean
map over the whole test set; the deletion test over a fixed choice of test images; the
randomisation check against the same architecture with fresh random weights.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from fmbench import rundir as R
from fmbench.explain import choose_method, faithfulness, saliency

logger = logging.getLogger(__name__)

N_DELETION = 500          # test images in the deletion test (issue 13: >= 500)
N_RANDOMISATION = 100     # of those, images in the randomisation check
SEED = 0


def _prob_of(model: nn.Module, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    from fmbench.engine.loop import predict_logits

    device = next(model.parameters()).device
    return lambda images: predict_logits(model, images.to(device), 500, precision).softmax(1).cpu()


def deletion_indices(n_test: int) -> torch.Tensor:
    """The fixed, seeded choice of test images the deletion test (and, of its first ones, the
    randomisation check) runs on, sorted."""
    return torch.from_numpy(np.sort(np.random.default_rng(SEED).choice(n_test, size=min(N_DELETION, n_test),
                                                                       replace=False)))


def faithfulness_checks(model: nn.Module, name: str, model_cfg: Any, family: str, method: str, images: torch.Tensor,
                        labels: torch.Tensor, maps: torch.Tensor, precision: str = "fp32") -> dict[str, Any]:
    """{"deletion", "randomisation"} for `maps` (N, 28, 28), the `method` maps of `images` for their
    true `labels`: the deletion test over all N, the randomisation check over the first N_RANDOMISATION
    against the same architecture with fresh random weights."""
    from fmbench.models import build_model

    device = next(model.parameters()).device
    deletion = faithfulness.deletion(_prob_of(model, precision), images.cpu(), labels.cpu(), maps, SEED)
    torch.manual_seed(SEED)
    random_model = build_model(name, model_cfg).to(device).eval()
    few = slice(0, N_RANDOMISATION)
    random_maps = saliency(random_model, family, images[few].to(device), method, target=labels[few].to(device))
    return {"deletion": deletion, "randomisation": faithfulness.randomisation(maps[few], random_maps)}


def test_set_faithfulness(model: nn.Module, name: str, model_cfg: Any, family: str, method: str,
                          test_x: torch.Tensor, test_y: torch.Tensor, precision: str = "fp32") -> dict[str, Any]:
    """`faithfulness_checks` of `method`'s maps on the test images a run's record uses (deletion_indices)."""
    device = next(model.parameters()).device
    chosen = deletion_indices(len(test_y))
    images, labels = test_x[chosen].to(device), test_y[chosen].to(device)
    maps = saliency(model, family, images, method, target=labels)
    return faithfulness_checks(model, name, model_cfg, family, method, images, labels, maps, precision)


def explain_run(model: nn.Module, name: str, model_cfg: Any, family: str, test_x: torch.Tensor,
                test_y: torch.Tensor, precision: str = "fp32") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(explain.json record, explain.safetensors tensors) for a trained model on its test set (uint8, CPU)."""
    t0 = time.perf_counter()
    method = choose_method(family, None, name)
    device = next(model.parameters()).device
    test_x, test_y = test_x.to(device), test_y.to(device)
    model.eval()
    idx = R.sample_indices(len(test_y))
    sample_maps = saliency(model, family, test_x[idx], method)
    t_samples = time.perf_counter() - t0

    all_maps = saliency(model, family, test_x, method, target=test_y)           # for the true class
    n_classes = int(model_cfg.num_classes)
    class_means = torch.zeros(n_classes, *all_maps.shape[1:])
    class_means.index_add_(0, test_y.cpu(), all_maps)
    class_means /= torch.bincount(test_y.cpu(), minlength=n_classes).clamp_min(1)[:, None, None].float()

    chosen = deletion_indices(len(test_y))
    checks = faithfulness_checks(model, name, model_cfg, family, method, test_x[chosen.to(device)],
                                 test_y[chosen.to(device)], all_maps[chosen], precision)
    record = {"method": method, "model": name, "sample_indices": idx, "class_means_n": len(test_y),
              **checks,
              "seconds": {"samples": round(t_samples, 2), "total": round(time.perf_counter() - t0, 2)}}
    d = record["deletion"]
    logger.info("explained %s (%s): deletion AUC %.3f by saliency vs %.3f at random over %d images; rank "
                "correlation with random weights %s; %.1f s", name, method, d["saliency_auc"],
                d["random_auc"], d["n"], record["randomisation"]["spearman_mean"], record["seconds"]["total"])
    return record, {"sample_maps": sample_maps.contiguous(), "class_means": class_means.contiguous()}


def record_explanations(run_dir: Path, model: nn.Module, name: str, model_cfg: Any, family: str,
                        test_x: torch.Tensor, test_y: torch.Tensor, precision: str = "fp32") -> dict[str, Any]:
    """Compute and write RUN_DIR/explain.json and explain.safetensors; returns the record."""
    record, tensors = explain_run(model, name, model_cfg, family, test_x, test_y, precision)
    R.write_explanation(run_dir, record, tensors)
    return record
