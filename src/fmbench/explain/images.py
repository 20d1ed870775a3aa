"""Explanations of given images (`fmbench.explain_images`, `fmbench explain`): each image's prediction and
map, the method's faithfulness on the test set when asked, and the overlay figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from fmbench.explain import choose_method, head_maps, saliency


def explain(model: nn.Module, name: str, model_cfg: Any, images: torch.Tensor, method: str | None = None,
                   precision: str = "fp32", classes: Sequence[str] | None = None,
                   test_set: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict[str, Any]]:
    """One dict per uint8 image (N, 28, 28): {"class", "index", "probability", "model", "method",
    "saliency": (28, 28) in [0, 1]}, with "heads" (heads, 28, 28) for method "attention" and
    "faithfulness" ({"deletion", "randomisation"} on `test_set`, uint8 images and labels) when given.
    `model` is the registered model `name` (its config `model_cfg`), in eval mode on its device."""
    from fmbench import CLASSES
    from fmbench.engine.loop import predict_logits
    from fmbench.explain.record import test_set_faithfulness
    from fmbench.models import get_spec

    family = get_spec(name).family
    method = choose_method(family, method, name)
    classes = classes or CLASSES
    x = images.to(next(model.parameters()).device)
    probs = predict_logits(model, x, 256, precision).softmax(1).cpu()
    maps = saliency(model, family, x, method)
    heads = head_maps(model, x) if method == "attention" else None
    faith = (test_set_faithfulness(model, name, model_cfg, family, method, *test_set, precision)
             if test_set is not None else None)
    rows = []
    for n, (p, k) in enumerate(zip(*probs.max(1))):
        row = {"class": classes[int(k)], "index": int(k), "probability": float(p), "model": name, "method": method,
               "saliency": maps[n]}
        if heads is not None:
            row["heads"] = heads[n]
        if faith is not None:
            row["faithfulness"] = faith
        rows.append(row)
    return rows


def write_overlays(path: Path, images: torch.Tensor, rows: list[dict[str, Any]], names: Sequence[str]) -> Path:
    """A PNG with one row per image: the image, its map over it, and each head's for "attention"."""
    from fmbench.fileio import atomic_path
    from fmbench.report.plots import explanation_rows

    model, method = rows[0]["model"], rows[0]["method"]
    heads = torch.stack([r["heads"] for r in rows]) if "heads" in rows[0] else None
    columns = [torch.stack([r["saliency"] for r in rows]).numpy()]
    titles = [f"{model}: {method}"]
    if heads is not None:
        columns += [heads[:, h].numpy() for h in range(heads.shape[1])]
        titles += [f"head {h + 1}" for h in range(heads.shape[1])]
    captions = [f"{Path(name).name}\n{r['class']} {r['probability']:.0%}" for name, r in zip(names, rows)]
    with atomic_path(path) as tmp:
        explanation_rows(images.numpy(), columns, captions, titles, tmp)
    return Path(path)
