"""Sections for the data-size, robustness and equal-budget studies, read from their JSON results.

Each study writes its own report (`write_study_report`), and `fmbench compare` given a study's
directory adds the same section to the main report (`study_section`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmbench.errors import RunDirError
from fmbench.fileio import read_json
from fmbench.report import stats, study_plots
from fmbench.report.document import Doc, publish
from fmbench.report.tiers import family_names, family_tier

STUDY_FILES = ("robustness.json", "data_size.json", "equal_budget.json")
KINDS = {"robustness": "robustness", "data-size": "data efficiency", "equal-budget": "an equal search budget"}


def find_study(directory: Path) -> dict[str, Any] | None:
    """The study result in `directory` (robustness.json or data_size.json), or None when it holds none."""
    for name in STUDY_FILES:
        path = Path(directory) / name
        if path.is_file():
            result = read_json(path)
            if not isinstance(result, dict) or result.get("kind") not in KINDS:
                raise RunDirError(f"{path}: not an fmbench study result (no 'kind')")
            return result
    return None


def study_section(doc: Doc, result: dict[str, Any]) -> None:
    {"robustness": robustness_section, "data-size": data_size_section,
     "equal-budget": equal_budget_section}[result["kind"]](doc, result)


def write_study_report(result: dict[str, Any], out: Path) -> Path:
    title = "fmbench study: " + KINDS[result["kind"]]
    return publish(lambda doc: study_section(doc, result), title, out)


def _pairs(models: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(CNN label, ViT label) pairs of the same tier, from (label, registry name); every pair if none."""
    info = {label: family_tier(name) for label, name in models}
    pairs = [(a, b) for a, (fa, ta) in info.items() for b, (fb, tb) in info.items()
             if fa == "cnn" and fb == "vit" and ta == tb]
    labels = [m[0] for m in models]
    return pairs or [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]


# ----------------------------------------------------------------------------- robustness

def robustness_tables(result: dict[str, Any]) -> dict[str, Any]:
    """Accuracy per model x corruption x severity, clean accuracy, CE and relative CE against the baseline."""
    y = np.array(result["labels"])
    acc, clean = {}, {}
    for m in result["models"]:
        clean[m["label"]] = float(np.mean(np.array(m["clean_predictions"]) == y))
        acc[m["label"]] = np.array([[np.mean(np.array(p) == y) for p in m["predictions"][c]]
                                    for c in result["corruptions"]])            # (corruptions, severities)
    base = result.get("baseline") or result["models"][0]["label"]
    err = {k: 1 - v for k, v in acc.items()}
    ce = {k: (err[k].sum(1) / np.maximum(err[base].sum(1), 1e-12)) for k in acc}
    rel = {k: ((err[k] - (1 - clean[k])).sum(1) / np.maximum((err[base] - (1 - clean[base])).sum(1), 1e-12))
           for k in acc}
    return {"acc": acc, "clean": clean, "ce": ce, "rel_ce": rel, "baseline": base}


def robustness_section(doc: Doc, result: dict[str, Any]) -> None:
    t = robustness_tables(result)
    corr, sev, y = result["corruptions"], result["severities"], np.array(result["labels"])
    labels = [m["label"] for m in result["models"]]
    doc.section("Robustness to corruptions")
    doc.p(f"Accuracy on {result['n_images']:,} test images (a stratified, seeded choice; the same images for "
          f"every model and condition) under {len(corr)} corruptions at severities {sev[0]}-{sev[-1]}, generated "
          "in memory with seed 0 (fmbench.corruptions: modelled on MNIST-C / Fashion-MNIST-C, each parameter "
          "listed there). mCE is the ImageNet-C mean corruption error: per corruption, the errors summed over "
          f"severities relative to {t['baseline']}'s, then averaged; relative mCE counts only the error added "
          f"to the clean error. Evaluated in {result['seconds']:.0f} s.")
    rows = []
    for label in labels:
        a = t["acc"][label]
        rows.append([label, f"{t['clean'][label] * 100:.2f}%", f"{a.mean() * 100:.2f}%",
                     f"{(t['clean'][label] - a.mean()) * 100:.2f}", f"{t['ce'][label].mean() * 100:.1f}%",
                     f"{t['rel_ce'][label].mean() * 100:.1f}%"])
    doc.table(["Model", "Clean accuracy", "Mean corrupted accuracy", "Drop (points)", "mCE", "Relative mCE"],
              rows, "lrrrrr")
    header = ["Corruption"] + labels
    doc.table(header, [[c] + [f"{t['acc'][l][i].mean() * 100:.1f}%" for l in labels] for i, c in enumerate(corr)],
              "l" + "r" * len(labels))
    study_plots.robustness_heatmaps(t["acc"], corr, sev, doc.fig(
        "robustness_heatmap.png", "Accuracy (%) per corruption and severity, per model"))
    pairs = _pairs([(m["label"], m["model"]) for m in result["models"]])
    for a, b in pairs:
        _robustness_pair(doc, result, t, a, b, y)
    if "examples" in result:
        study_plots.corruption_examples([np.array(r) for r in result["examples"]["images"]], corr, sev, doc.fig(
            "corruption_examples.png", f"Test image #{result['examples']['index']} under each corruption "
                                       "(rows) at each severity (columns)"))


def _robustness_pair(doc: Doc, result: dict, t: dict, a: str, b: str, y: np.ndarray) -> None:
    """McNemar per corruption (all severities pooled) and which model loses more under each."""
    preds = {m["label"]: m["predictions"] for m in result["models"]}
    fam = {m["label"]: family_names().get(family_tier(m["model"])[0] or "", m["model"]) for m in result["models"]}
    doc.h(3, f"{a} ({fam[a]}) vs {b} ({fam[b]})")
    rows, less_accurate, drops_more = [], [], []
    for i, c in enumerate(result["corruptions"]):
        pa, pb = np.concatenate(preds[a][c]), np.concatenate(preds[b][c])
        test = stats.mcnemar(pa, pb, np.tile(y, len(preds[a][c])))
        drop_a = t["clean"][a] - t["acc"][a][i].mean()
        drop_b = t["clean"][b] - t["acc"][b][i].mean()
        if t["acc"][b][i].mean() < t["acc"][a][i].mean() and test.p_value < 0.05:
            less_accurate.append(c)
        if drop_b > drop_a:
            drops_more.append(c)
        rows.append([c, f"{t['acc'][a][i].mean() * 100:.1f}%", f"{t['acc'][b][i].mean() * 100:.1f}%",
                     f"{(drop_a - drop_b) * 100:+.1f}", f"{test.p_value:.1e}", f"{test.b:,} / {test.c:,}"])
    doc.table(["Corruption", a, b, f"drop {a} − drop {b} (points)", "McNemar p", f"b / c ({a} only / {b} only right)"],
              rows, "lrrrrr")
    doc.p(f"Under corruption, {b} is significantly less accurate than {a} (McNemar p < 0.05, severities pooled) "
          f"under: {', '.join(less_accurate) or 'none'}. Measured from each model's own clean accuracy, {b} loses "
          f"more points than {a} under: {', '.join(drops_more) or 'none'}.")


# ----------------------------------------------------------------------------- data size

def data_size_curves(result: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Per model: sizes and mean / 95% t-interval over seeds of test accuracy and weighted F1."""
    out = {}
    for label, per_size in result["models"].items():
        sizes = sorted(int(s) for s in per_size)
        c: dict[str, Any] = {"sizes": np.array(sizes)}
        for key, field in (("acc", "test_accuracy"), ("f1", "test_f1_weighted")):
            means, los, his, points = [], [], [], []
            for s in sizes:
                values = [r[field] for r in per_size[str(s)]]
                lo, hi = stats.t_interval(values)
                means.append(float(np.mean(values)))
                los.append(max(lo, 0.0))              # an accuracy interval ends at 0 and 1
                his.append(min(hi, 1.0))
                points.append(values)
            c[f"{key}_mean"], c[f"{key}_lo"], c[f"{key}_hi"] = np.array(means), np.array(los), np.array(his)
            c[f"{key}_seeds"] = points
        out[label] = c
    return out


def data_size_section(doc: Doc, result: dict[str, Any]) -> None:
    curves = data_size_curves(result)
    labels = list(curves)
    doc.section("Data efficiency")
    doc.p(f"Each model trained on stratified subsets of the training split ({', '.join(f'{s:,}' for s in result['sizes'])} "
          f"images; nested: each subset holds the smaller ones of the same seed), {len(result['seeds'])} seeds each; "
          f"the validation split ({result['n_val']:,} images) and the {result['n_test']:,} test images stay fixed. "
          f"Budget: {result['budget']} Intervals: 95% t-intervals over seeds, clipped to [0, 100]% (with 2 "
          "seeds the t factor is 12.7, so they are wide; the figure shows each seed as a dot).")
    header = ["Training images"] + [f"{l} accuracy" for l in labels]
    rows = []
    for i, s in enumerate(result["sizes"]):
        rows.append([f"{s:,}"] + [f"{curves[l]['acc_mean'][i] * 100:.2f}% "
                                  f"[{curves[l]['acc_lo'][i] * 100:.1f}, {curves[l]['acc_hi'][i] * 100:.1f}]"
                                  for l in labels])
    doc.table(header, rows, "r" * (1 + len(labels)))
    study_plots.data_size_curves(curves, doc.fig("data_size.png", "Test accuracy and weighted F1 against "
                                                                  "training-set size (log axis), 95% interval over seeds"))
    for a, b in _pairs([(l, result["model_names"][l]) for l in labels]):
        gap = curves[a]["acc_mean"] - curves[b]["acc_mean"]
        within = [s for s, g in zip(result["sizes"], gap) if g <= 0.01]
        doc.h(3, f"{a} vs {b}")
        doc.p(f"{b} comes within 1 point of {a} (mean over seeds) at "
              + (f"{within[0]:,} training images." if within else "no size tested: not reached.")
              + " Gap per size: " + ", ".join(f"{s:,}: {g * 100:+.2f}" for s, g in zip(result["sizes"], gap)) + ".")
        rows = [[f"{s:,}", f"{p['p_value']:.1e}", f"{p['b']:,} / {p['c']:,}"]
                for s, p in zip(result["sizes"], result["mcnemar"][f"{a}|{b}"])]
        doc.table(["Training images", "McNemar p (first seed)", f"b / c ({a} only / {b} only right)"], rows, "rrr")


# ----------------------------------------------------------------------------- equal budget

def equal_budget_section(doc: Doc, result: dict[str, Any]) -> None:
    """What each model's search spent and found (equal_budget.json); the final runs' results are
    the report's own tables."""
    models = result["models"]
    doc.section("An equal search budget")
    fixed = sorted({k for m in models for k in m["fixed"]} & set(result["full_data_keys"]))
    doc.p(f"Each model's hyperparameters were searched for the same wall-clock time, "
          f"{result['budget_s'] / 60:.0f} minutes, on the same machine (Optuna: seeded TPE sampler, "
          f"{result['pruner']} pruner on each epoch's validation accuracy; the choice uses the validation split "
          f"only). Each model's chosen recipe was then trained with {result['seeds']} seed"
          f"{'s' if result['seeds'] > 1 else ''}: those are the runs of the tables above. A search starts no trial "
          "once its budget is spent and lets the running one finish, so its time can pass the budget by up to one "
          "trial."
          + (f" The searches fixed {', '.join(fixed)} to fit more trials into the budget; the final runs train on "
             "the full training set." if fixed else ""))
    rows = [[m["model"], f"{m['elapsed_s'] / 60:.1f} min", str(m["trials"]), str(m["complete"]), str(m["pruned"]),
             str(m["fail"]), f"{m['best_val_accuracy'] * 100:.2f}% (trial {m['best_trial']})",
             ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m["chosen"].items())]
            for m in models]
    doc.table(["model", "search time", "trials", "finished", "pruned", "failed", "best validation accuracy",
               "chosen settings"], rows, "lrrrrrrl")
    doc.p("Search spaces: " + "; ".join(f"{m['model']}: " + ", ".join(f"{k} {v}" for k, v in m["space"].items())
                                        for m in models) + ". Each search's trials, pruning and parameter "
          "importances are in its own report, " + ", ".join(f"{m['search_dir']}/tune.md" for m in models) + ".")
