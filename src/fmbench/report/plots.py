"""Every matplotlib figure of the report. Plain arrays in, one PNG out per function.

matplotlib is imported inside the functions (training never pays for it) and used through
`matplotlib.figure.Figure`, which renders with Agg and touches no pyplot global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

WRONG = "#c62828"   # misclassification
RIGHT = "#2e7d32"
DPI = 100
CURVES = (("loss", "loss"), ("accuracy", "accuracy"), ("f1", "weighted F1"))


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # only matters if pyplot is imported later in this process
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", metadata={"Software": None})  # no version stamp: stable bytes
    return path


def learning_curves(series: Sequence[tuple[str, list[dict], int | None]], title: str,
                    path: Path) -> Path:
    """Loss, accuracy and F1 per epoch; train solid, validation dashed; one colour per series.

    `series` is (name, metrics.jsonl rows, best epoch or None) per line pair.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure(13, 3.8)
    axes = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(len(series))]
    for ax, (key, name) in zip(axes, CURVES):
        for (label, epochs, best), color in zip(series, colors):
            x = [e["epoch"] for e in epochs]
            ax.plot(x, [e[f"train_{key}"] for e in epochs], color=color, lw=1.6,
                    label=f"{label} train")
            ax.plot(x, [e[f"val_{key}"] for e in epochs], color=color, lw=1.6, ls="--",
                    label=f"{label} val")
            if best is not None:
                ax.axvline(best, color=color, lw=0.8, ls=":")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title}  (dotted line: best epoch)")
    return _save(fig, path)


def confusion_matrix(cm: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (each row: where the images of one true class went)."""
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(7.5, 6.5)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(classes)
    for i in range(k):
        for j in range(k):
            if norm[i, j] >= 0.005:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return _save(fig, path)


def per_class_f1(f1: dict[str, Sequence[float]], classes: Sequence[str], path: Path) -> Path:
    """Grouped bars: per-class test F1, one bar per model in each class."""
    fig = _figure(12, 4.2)
    ax = fig.subplots()
    k, m = len(classes), len(f1)
    width = 0.8 / max(m, 1)
    x = np.arange(k)
    for i, (label, values) in enumerate(f1.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label, color=f"C{i % 10}")
    low = min(min(v) for v in f1.values())
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_xticks(x, classes, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("test F1")
    ax.set_title("Per-class F1 on the test set")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def confused_examples(images: np.ndarray, pairs: Sequence[dict], classes: Sequence[str],
                      title: str, path: Path, per_pair: int = 4) -> Path:
    """One row per confused pair (true -> predicted): up to `per_pair` test images of that mistake.

    Each pair is {"true", "pred", "count", "indices", "conf"} (indices into `images`).
    """
    rows = max(len(pairs), 1)
    fig = _figure(1.5 * per_pair + 1.8, 1.6 * rows + 0.5)
    axes = np.atleast_2d(fig.subplots(rows, per_pair, squeeze=False))
    for r, pair in enumerate(pairs):
        for c in range(per_pair):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{classes[pair['true']]}\n→ {classes[pair['pred']]}\n"
                              f"({pair['count']} image{'s' if pair['count'] != 1 else ''})", fontsize=8, rotation=0, ha="right",
                              va="center", labelpad=8)
            if c >= len(pair["indices"]):
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            ax.imshow(images[pair["indices"][c]], cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(f"#{pair['indices'][c]}  p={pair['conf'][c]:.2f}", fontsize=8)
            for spine in ax.spines.values():
                spine.set_color(WRONG)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def sample_predictions(images: np.ndarray, indices: Sequence[int], true: Sequence[int],
                       predictions: dict[str, tuple[Sequence[int], Sequence[float]]],
                       classes: Sequence[str], path: Path) -> Path:
    """The same test images for every model: true class above, each model's guess below.

    `predictions` maps a model label to (predicted class, confidence) per chosen image;
    wrong predictions are red.
    """
    n, m = len(indices), len(predictions)
    line_pt = 12                                   # one text line per model under each image
    bottom_in, top_in = (6 + line_pt * m) / 72, 0.55
    height = 2.0 + bottom_in + top_in
    fig = _figure(2.0 * n, height, layout=None)    # fixed margins: the text sits outside the axes
    fig.subplots_adjust(left=0.01, right=0.99, bottom=bottom_in / height, top=1 - top_in / height,
                        wspace=0.08)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for col, (ax, idx) in enumerate(zip(axes, indices)):
        ax.imshow(images[idx], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{idx}\ntrue: {classes[true[col]]}", fontsize=9)
        wrong = False
        for k, (label, (pred, conf)) in enumerate(predictions.items()):
            ok = pred[col] == true[col]
            wrong |= not ok
            ax.annotate(f"{label}: {classes[pred[col]]} {conf[col]:.2f}", xy=(0.5, 0),
                        xycoords="axes fraction", xytext=(0, -4 - line_pt * k),
                        textcoords="offset points", ha="center", va="top", fontsize=8,
                        color=RIGHT if ok else WRONG, fontweight="normal" if ok else "bold")
        if wrong:
            for spine in ax.spines.values():
                spine.set_color(WRONG)
                spine.set_linewidth(2)
    return _save(fig, path)


def _overlay(ax: Any, image: np.ndarray, saliency: np.ndarray) -> None:
    """The image in grey with the map (0..1) over it in a heat colour map, half transparent."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.imshow(saliency, cmap="jet", vmin=0, vmax=1, alpha=0.45, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def explanation_rows(images: np.ndarray, maps: Sequence[np.ndarray], captions: Sequence[str],
                     column_titles: Sequence[str], path: Path) -> Path:
    """One row per image: the image, then one overlay per map set (maps[j] is (N, 28, 28) in [0, 1])."""
    n, cols = len(images), 1 + len(maps)
    fig = _figure(1.6 * cols + 0.4, 1.75 * n + 0.3)
    axes = np.atleast_2d(fig.subplots(n, cols, squeeze=False))
    for i in range(n):
        axes[i, 0].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        axes[i, 0].set_ylabel(captions[i], fontsize=8)
        for j, m in enumerate(maps):
            _overlay(axes[i, j + 1], images[i], m[i])
    for j, title in enumerate(["image", *column_titles]):
        axes[0, j].set_title(title, fontsize=8)
    return _save(fig, path)


def class_mean_maps(means: dict[str, np.ndarray], classes: Sequence[str], path: Path) -> Path:
    """Per model (rows) and true class (columns), the mean map over that class's test images."""
    rows = list(means)
    fig = _figure(1.1 * len(classes) + 0.8, 1.2 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), len(classes), squeeze=False)
    for i, label in enumerate(rows):
        for k, cls in enumerate(classes):
            ax = axes[i, k]
            ax.imshow(means[label][k], cmap="jet", vmin=0, vmax=max(float(means[label][k].max()), 1e-6))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cls, fontsize=7)
        axes[i, 0].set_ylabel(label, fontsize=8)
    return _save(fig, path)


def deletion_curves(curves: dict[str, dict], path: Path) -> Path:
    """True-class probability as pixels are removed: saliency order solid, random order dashed."""
    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    for i, (label, d) in enumerate(curves.items()):
        colour = f"C{i}"
        x = np.array(d["fractions"]) * 100
        ax.plot(x, d["saliency_curve"], color=colour, label=f"{label}: most salient first (AUC {d['saliency_auc']:.3f})")
        ax.plot(x, d["random_curve"], color=colour, linestyle="--", label=f"{label}: random order (AUC {d['random_auc']:.3f})")
    ax.set_xlabel("pixels removed (%)")
    ax.set_ylabel("true-class probability")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
