"""The example-grid figure: a row of examples per class, class names as row labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmbench.errors import FmbenchError
from fmbench.fileio import atomic_path

if TYPE_CHECKING:
    from fmbench.data import Dataset

_PAD = 2  # pixels of white between images


def figure_format(path: str | os.PathLike) -> str:
    """The image format named by `path`'s suffix (png if none); FmbenchError unless png, pdf or svg."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "pdf", "svg"):
        raise FmbenchError(f"{path}: cannot write a .{fmt} figure (use .png, .pdf or .svg)")
    return fmt


def save_example_grid(dataset: Dataset, path: str | os.PathLike, *, per_class: int = 8,
                      split: str = "train") -> Path:
    """Write a classes x `per_class` grid of the first examples of each class to `path` (PNG, atomically)."""
    path, fmt = Path(path), figure_format(path)
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg without touching pyplot's global backend
    from matplotlib.figure import Figure

    images = getattr(dataset, f"{split}_images").numpy()
    labels = getattr(dataset, f"{split}_labels").numpy()
    n_classes, cell = len(dataset.classes), 28 + _PAD
    # (classes * cell, per_class * cell) mosaic; NaN gutters and missing examples are drawn white
    mosaic = np.full((n_classes * cell - _PAD, per_class * cell - _PAD), np.nan, dtype=np.float32)
    for c in range(n_classes):
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            mosaic[c * cell:c * cell + 28, j * cell:j * cell + 28] = images[i]

    fig = Figure(figsize=(1.8 + 0.55 * per_class, 0.6 + 0.55 * n_classes), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap=colormaps["gray"].with_extremes(bad="white"), vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_yticks([c * cell + 13.5 for c in range(n_classes)], dataset.classes)
    ax.set_xticks([])
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"Fashion-MNIST: first {per_class} {split} examples per class", fontsize=10)
    fig.tight_layout()

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)
    return path
