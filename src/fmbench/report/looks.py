"""The report's "Where each model looks" section, from each run's explain.json and explain.safetensors.

Sample maps over the report's sample images, the mean map per true class, and the faithfulness
figures (deletion test, weight randomisation) that say whether the maps can be trusted.
"""

from __future__ import annotations

import numpy as np

from fmbench.report import plots
from fmbench.report.document import Doc
from fmbench.report.runs import RunRecord

METHOD_NAMES = {"gradcam": "Grad-CAM (last convolutional features)",
                "rollout": "attention rollout (all layers, heads averaged)",
                "attention": "last layer's class-token attention"}


def _gap(d: dict) -> float:
    """How much faster the true class fades when the most salient pixels go first (random AUC - saliency AUC)."""
    return d["random_auc"] - d["saliency_auc"]


def looks_section(doc: Doc, reps: dict[str, RunRecord], classes: list[str], images: np.ndarray | None,
                  images_note: str) -> None:
    doc.section("Where each model looks")
    have = {label: r for label, r in reps.items() if r.explanation is not None}
    missing = [label for label in reps if label not in have]
    if missing:
        doc.note(f"No explanation recorded for {', '.join(missing)} (runs written before fmbench recorded them); "
                 "`fmbench explain RUN_DIR --record` adds one.")
    if not have:
        return
    methods = sorted({f"{label}: {METHOD_NAMES.get(r.explanation[0]['method'], r.explanation[0]['method'])}"
                      for label, r in have.items()})
    doc.p("Saliency maps (red: what most raises the model's output; each map scaled to its own range) by "
          + "; ".join(methods) + ". CNNs are explained by Grad-CAM, ViTs by attention rollout: two different "
          "questions asked of two families, so compare where the maps point, not their texture.")
    first = next(iter(have.values()))
    idx = first.explanation[0]["sample_indices"]
    if images is not None:
        labels = first.labels[idx]
        captions = [f"#{k} {classes[int(t)]}" for k, t in zip(idx, labels)]
        plots.explanation_rows(images[idx], [r.explanation[1]["sample_maps"] for r in have.values()], captions,
                               list(have), doc.fig("saliency_samples.png",
                                                   "The sample images of section 'Sample predictions' and where "
                                                   "each model looks in them (for its predicted class)"))
    else:
        doc.note(f"Sample maps omitted: {images_note or 'no test images were given'}.")
    plots.class_mean_maps({label: r.explanation[1]["class_means"] for label, r in have.items()}, classes,
                          doc.fig("saliency_class_means.png",
                                  "Mean map per true class over the test set (for the true class)"))
    rows, curves = [], {}
    for label, r in have.items():
        rec = r.explanation[0]
        d, rnd = rec["deletion"], rec["randomisation"]
        curves[label] = d
        rho = "n/a" if rnd["spearman_mean"] is None else f"{rnd['spearman_mean']:+.2f}"
        rows.append([label, rec["method"], f"{d['saliency_auc']:.3f}", f"{d['random_auc']:.3f}",
                     f"{_gap(d):+.3f}", rho, f"{rnd['constant_maps']}/{rnd['n']}"])
    n_del = next(iter(curves.values()))["n"]
    doc.p(f"Faithfulness. Deletion test over {n_del} test images (a fixed choice): the pixels are set to the "
          "background, 5% at a time, most salient first or in a random order, and the mean probability of the "
          "true class is followed; the lower the area under the curve (AUC), the more the map found the pixels "
          "the model relies on. Randomisation check (Adebayo et al. 2018): the rank correlation between each "
          "map and the map of the same architecture with random weights, over the first "
          f"{next(iter(have.values())).explanation[0]['randomisation']['n']} of those images; near 0 means the "
          "map depends on what the model learned, not on the image alone.")
    doc.table(["Model", "Method", "Deletion AUC (salient first)", "Deletion AUC (random order)",
               "Difference", "Rank corr. with random weights", "Constant maps"], rows, "llrrrrr",
              bad={(i, 4) for i, d in enumerate(curves.values()) if _gap(d) <= 0.02})
    plots.deletion_curves(curves, doc.fig("deletion_curves.png",
                                          "Deletion curves: true-class probability as pixels are removed"))
    faithful = [label for label, d in curves.items() if _gap(d) > 0.02]
    unfaithful = [label for label in curves if label not in faithful]
    doc.p("Every model's maps beat a random order by more than 0.02 AUC." if not unfaithful else
          f"Maps that do not clearly beat a random order (difference under 0.02 AUC): {', '.join(unfaithful)}; "
          "treat them as pictures, not evidence.")
    _shirts(doc, have, classes)


def _shirts(doc: Doc, have: dict[str, RunRecord], classes: list[str]) -> None:
    """Shirt vs T-shirt/top: how alike are each model's mean maps of the two classes?"""
    if "Shirt" not in classes or "T-shirt/top" not in classes:
        return
    s, t = classes.index("Shirt"), classes.index("T-shirt/top")
    parts = []
    for label, r in have.items():
        means = r.explanation[1]["class_means"]
        a, b = means[s].ravel(), means[t].ravel()
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        parts.append(f"{label} {corr:.2f}")
    doc.p("Shirt vs T-shirt/top, among the most confused pairs of Fashion-MNIST (see the errors section): the "
          "correlation of each model's mean "
          "Shirt map with its mean T-shirt/top map is " + ", ".join(parts) + " (1: it looks at the same "
          "places for both classes).")
