"""Classification metrics derived from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

import torch

from fmbench import CLASSES


def confusion_update(cm: torch.Tensor, target: torch.Tensor, pred: torch.Tensor) -> None:
    """Add a batch to the (C, C) int64 confusion matrix `cm` in place (on its device)."""
    c = cm.shape[0]
    cm += torch.bincount(target * c + pred, minlength=c * c).view(c, c)


def per_class(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(precision, recall, f1, support) per class; 0 where undefined (as scikit-learn's zero_division=0)."""
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return precision, recall, f1, support


def accuracy(cm: torch.Tensor) -> float:
    total = cm.sum().item()
    return cm.diag().sum().item() / total if total else 0.0


def f1_weighted(cm: torch.Tensor) -> float:
    """F1 per class averaged with weights = class support (scikit-learn's average='weighted')."""
    _, _, f1, support = per_class(cm)
    total = support.sum().item()
    return (f1 * support).sum().item() / total if total else 0.0


def report(cm: torch.Tensor, loss: float, classes: tuple[str, ...] = CLASSES) -> dict:
    """The JSON record of one evaluated split (see docs/design.md, eval.json)."""
    precision, recall, f1, support = per_class(cm)
    return {
        "loss": loss,
        "accuracy": accuracy(cm),
        "f1_weighted": f1_weighted(cm),
        "n": int(cm.sum().item()),
        "per_class": [
            {"class": classes[i], "precision": precision[i].item(), "recall": recall[i].item(),
             "f1": f1[i].item(), "support": int(support[i].item())}
            for i in range(cm.shape[0])
        ],
        "confusion_matrix": cm.long().tolist(),
    }
