"""Figures of the data-size and robustness studies. Plain arrays in, one PNG out per function."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fmbench.report.plots import _figure, _save


def robustness_heatmaps(acc: dict[str, np.ndarray], corruptions: Sequence[str], severities: Sequence[int],
                        path: Path) -> Path:
    """Per model, accuracy (corruption rows x severity columns), one shared colour scale."""
    models = list(acc)
    fig = _figure(2.3 * len(models) + 1.6, 0.32 * len(corruptions) + 1.3)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for k, (ax, label) in enumerate(zip(axes, models)):
        im = ax.imshow(acc[label], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i in range(len(corruptions)):
            for j in range(len(severities)):
                v = acc[label][i, j]
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 0.6 else "black")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(len(severities)), [str(s) for s in severities], fontsize=7)
        ax.set_xlabel("severity", fontsize=8)
        ax.set_yticks(range(len(corruptions)), list(corruptions) if k == 0 else [""] * len(corruptions), fontsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="accuracy")
    return _save(fig, path)


def corruption_examples(rows: Sequence[np.ndarray], names: Sequence[str], severities: Sequence[int],
                        path: Path) -> Path:
    """One test image per row (a corruption), severity 0 (clean) then each severity across."""
    cols = 1 + len(severities)
    fig = _figure(0.9 * cols + 1.2, 0.9 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, (images, name) in enumerate(zip(rows, names)):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(images[j], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("clean" if j == 0 else f"severity {severities[j - 1]}", fontsize=7)
        axes[i, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    return _save(fig, path)


def data_size_curves(curves: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Test accuracy and weighted F1 against training-set size (log axis), mean and 95% interval over seeds.

    `curves[label]` holds "sizes", "acc_mean", "acc_lo", "acc_hi", "f1_mean", "f1_lo", "f1_hi" and, per
    size, each seed's value ("acc_seeds", "f1_seeds"; drawn as dots)."""
    fig = _figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    for ax, (key, title) in zip(axes, (("acc", "test accuracy"), ("f1", "test weighted F1"))):
        for i, (label, c) in enumerate(curves.items()):
            colour = f"C{i}"
            ax.plot(c["sizes"], c[f"{key}_mean"], marker="o", color=colour, label=label)
            ax.fill_between(c["sizes"], c[f"{key}_lo"], c[f"{key}_hi"], color=colour, alpha=0.2, linewidth=0)
            for size, values in zip(c["sizes"], c.get(f"{key}_seeds", [])):
                ax.scatter([size] * len(values), values, color=colour, s=10, alpha=0.7, zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3, which="both")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return _save(fig, path)
