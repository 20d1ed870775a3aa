"""Assemble the comparison report from run directories: report.md, report.html and figures/*.png.

The report is built once as a `document.Doc` (headings, paragraphs, tables, figures) and then
rendered twice, so that the Markdown and the HTML cannot disagree. Figures are drawn into a
temporary directory inside OUT_DIR and moved into place only when everything succeeded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from fmbench import __version__
from fmbench import rundir as R
from fmbench.errors import DataError, RunDirError
from fmbench.published import PUBLISHED, VIT_VAL_LOSS_NOTE
from fmbench.report import plots, stats
from fmbench.report.document import Doc, publish
from fmbench.report.looks import looks_section
from fmbench.report.studies import find_study, study_section
from fmbench.report.runs import RunRecord, load_runs
from fmbench.report.tiers import answer, tier_pairs, tiers_section

logger = logging.getLogger(__name__)

TOP_PAIRS = 5           # most confused (true, predicted) pairs per model
EXAMPLES_PER_PAIR = 4
N_BOOT = 10_000
FASHION_MNIST_TEST_N = 10_000
ALPHA = 0.05
DASH = "—"


def _file_slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


# ----------------------------------------------------------------------------- formatting
def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def pts(x: float) -> str:
    return f"{100 * x:+.2f} pts"


def pval(p: float) -> str:
    return "< 1e-300" if p == 0 else (f"{p:.1e}" if p < 1e-4 else f"{p:.4f}")


def _agg(values: list[float], fmt: str, scale: float = 1.0) -> str:
    ms = stats.mean_std([v * scale for v in values])
    return format(ms.mean, fmt) if ms.n == 1 else f"{ms.mean:{fmt}} ± {ms.std:{fmt}}"


def _num(x: Any, fmt: str = ",.0f") -> str:
    if x is None:
        return DASH
    try:
        return format(int(x) if fmt == "d" else x, fmt)
    except (TypeError, ValueError):
        return str(x)


def _seed(r: RunRecord) -> str:
    return f"seed {r.seed}" if r.seed is not None else r.path.name


# ----------------------------------------------------------------------------- sections
def _results(doc: Doc, groups: dict[str, list[RunRecord]]) -> None:
    doc.section("Results on train, validation and test")
    doc.p("Loss, accuracy and weighted F1 of each model on every split, one table per model: the weights "
          "its recipe keeps (the best epoch's, or the last where the recipe keeps the last, as Keras' "
          "EarlyStopping does by default), evaluated clean. With several seeds a cell is mean ± standard "
          "deviation over seeds. For the study's two architectures the study's own published figures "
          "(quoted, not measured here) stand beside ours: its CNN in Keras with up to 500 epochs and "
          "early stopping, its ViT in PyTorch for 60 epochs; `--preset seed` is its recipe.")
    footnote = False
    for label, runs in groups.items():
        published = PUBLISHED.get(runs[0].model)
        doc.h(3, f"{label}{' (pretrained)' if runs[0].pretrained else ''}: {len(runs)} "
                 f"seed{'s' if len(runs) != 1 else ''}")
        rows = []
        for split, split_name in (("train", "train"), ("val", "validation"), ("test", "test")):
            vals = [r.split(split) for r in runs]
            ours = ([DASH] * 3 if any(v is None for v in vals) else
                    [_agg([v["loss"] for v in vals], ".4f"), _agg([v["accuracy"] for v in vals], ".2f", 100) + "%",
                     _agg([v["f1_weighted"] for v in vals], ".4f")])
            if published is None:
                rows.append([split_name, *ours])
                continue
            v = published[split]
            footnote |= v.loss > 10
            study = [f"{v.loss:.3f}".rstrip("0").rstrip(".") + ("¹" if v.loss > 10 else ""),
                     f"{100 * v.accuracy:.1f}%", f"{v.f1_weighted:.3f}"]
            rows.append([split_name, ours[0], study[0], ours[1], study[1], ours[2], study[2]])
        if published is None:
            doc.table(["Split", "Loss", "Accuracy", "Weighted F1"], rows, "lrrr")
        else:
            doc.table(["Split", "Loss (ours)", "Loss (study)", "Accuracy (ours)", "Accuracy (study)",
                       "Weighted F1 (ours)", "Weighted F1 (study)"], rows, "lrrrrrr")
    if footnote:
        doc.note("¹ " + VIT_VAL_LOSS_NOTE)


def _curves(doc: Doc, groups: dict[str, list[RunRecord]]) -> None:
    doc.section("Learning curves")
    doc.p("Per epoch, from metrics.jsonl: training (solid) and validation (dashed) loss, accuracy "
          "and weighted F1. The dotted vertical line is the best epoch by the monitored metric; its "
          "weights are the model unless the recipe keeps the last epoch's (`restore_best=False`, as "
          "Keras' EarlyStopping by default and the tutorial's notebook).")
    overlay = []
    for label, runs in groups.items():
        trained = [r for r in runs if r.epochs]
        if not trained:
            why = "pretrained, evaluation only" if runs[0].pretrained else "metrics.jsonl is empty"
            doc.note(f"{label}: {why} — no training curves.")
            continue
        series = [(_seed(r) if len(trained) > 1 else label, r.epochs,
                   r.summary.get("best_epoch")) for r in trained]
        plots.learning_curves(series, f"{label}",
                              doc.fig(f"curves_{_file_slug(label)}.png", f"Learning curves of {label}"))
        overlay.append((label, trained[0].epochs, trained[0].summary.get("best_epoch")))
    if len(overlay) > 1:
        plots.learning_curves(overlay, "all models",
                              doc.fig("curves_all.png", "Learning curves of all models overlaid"))


def confused_pairs(cm: np.ndarray, top: int = TOP_PAIRS) -> list[tuple[int, int, int]]:
    """The `top` largest off-diagonal cells of a confusion matrix: (true, predicted, count)."""
    cm = np.asarray(cm)
    cells = [(int(cm[i, j]), i, j) for i in range(cm.shape[0]) for j in range(cm.shape[1])
             if i != j and cm[i, j] > 0]
    cells.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(i, j, n) for n, i, j in cells[:top]]


def _errors(doc: Doc, reps: dict[str, RunRecord], classes: list[str],
            images: np.ndarray | None, images_note: str) -> None:
    doc.section("Errors by class")
    doc.h(3, "Confusion matrices")
    doc.p("Test-set confusion matrices, normalised by row: each row shows where the images of one "
          "true class went.")
    for label, r in reps.items():
        cm = r.split("test")["confusion_matrix"]
        plots.confusion_matrix(np.asarray(cm), classes, f"{label} (test)",
                               doc.fig(f"confusion_{_file_slug(label)}.png",
                                       f"Confusion matrix of {label}, normalised by row", half=True))
    doc.h(3, "Per-class F1")
    f1 = {label: [row["f1"] for row in r.split("test")["per_class"]] for label, r in reps.items()}
    plots.per_class_f1(f1, classes, doc.fig("per_class_f1.png", "Per-class test F1 of every model"))
    rows = [[c] + [f"{f1[label][k]:.4f}" for label in reps] for k, c in enumerate(classes)]
    low = {(int(np.argmin(f1[label])), 1 + m) for m, label in enumerate(reps)}
    doc.table(["Class"] + list(reps), rows, "l" + "r" * len(reps), bad=low)
    doc.note("Highlighted: the lowest per-class F1 of each model.")
    doc.h(3, "Most confused pairs")
    for label, r in reps.items():
        pairs = confused_pairs(np.asarray(r.split("test")["confusion_matrix"]))
        support = np.asarray(r.split("test")["confusion_matrix"]).sum(axis=1)
        doc.p(f"{label}: the {len(pairs)} most frequent mistakes on the test set.")
        doc.table(["True class", "Predicted as", "Images", "% of true class"],
                  [[classes[i], classes[j], str(n), pct(n / max(support[i], 1))]
                   for i, j, n in pairs], "llrr")
        if images is None or not pairs:
            continue
        preds, conf = r.preds, r.probs.max(axis=1)
        examples = []
        for i, j, n in pairs:
            idx = np.flatnonzero((r.labels == i) & (preds == j))
            idx = idx[np.argsort(-conf[idx], kind="stable")][:EXAMPLES_PER_PAIR]
            examples.append({"true": i, "pred": j, "count": n, "indices": idx.tolist(),
                             "conf": conf[idx].tolist()})
        plots.confused_examples(
            images, examples, classes, f"{label}: most confident examples of each confusion",
            doc.fig(f"confused_{_file_slug(label)}.png",
                    f"{label}: test images of its most confused pairs (most confident first)"),
            per_pair=EXAMPLES_PER_PAIR)
    if images is None:
        doc.note(f"Example images omitted: {images_note or 'no test images were given'}.")


def _samples(doc: Doc, reps: dict[str, RunRecord], classes: list[str],
             images: np.ndarray | None, images_note: str) -> None:
    doc.section("Sample predictions")
    first = next(iter(reps.values()))
    idx = R.sample_indices(first.n_test)
    doc.p(f"The same {len(idx)} test images for every model (a fixed choice, seed {R.SAMPLE_SEED}): "
          "true class and each model's prediction with its confidence. Mistakes are marked ✗.")
    true = first.labels[idx].tolist()
    preds = {}
    rows, bad = [], set()
    for label, r in reps.items():
        preds[label] = (r.preds[idx].tolist(), r.probs[idx].max(axis=1).tolist())
    for row_i, (k, t) in enumerate(zip(idx, true)):
        row = [f"#{k}", classes[t]]
        for m, label in enumerate(reps):
            p, c = preds[label][0][row_i], preds[label][1][row_i]
            row.append(f"{'✗ ' if p != t else ''}{classes[p]} ({c:.2f})")
            if p != t:
                bad.add((row_i, 2 + m))
        rows.append(row)
    doc.table(["Image", "True class"] + list(reps), rows, "rl" + "l" * len(reps), bad=bad)
    if images is not None:
        plots.sample_predictions(images, idx, true, preds, classes,
                                 doc.fig("sample_predictions.png",
                                         "Sample predictions (red: misclassified)"))
    else:
        doc.note(f"Images omitted: {images_note or 'no test images were given'}.")


def _cost(doc: Doc, reps: dict[str, RunRecord]) -> None:
    doc.section("Cost")
    doc.p("Size, training and inference cost of each model (from summary.json and env.json; the "
          "lowest-seed run of each model).")
    train_rows, infer_rows = [], []
    for label, r in reps.items():
        s = r.summary
        kind = "pretrained (evaluation only)" if r.pretrained else "trained"
        if r.pretrained and not s.get("train_time_s"):
            train = [DASH] * 5
        else:  # a pretrained run carries its weights card's training figures
            train = [_num(s.get("train_time_s"), ",.1f") + " s", _num(s.get("epochs_run"), "d"),
                     _num(s.get("best_epoch"), "d"), "yes" if s.get("stopped_early") else "no",
                     _num(s.get("train_images_per_s"), ",.0f")]
        flops = s.get("flops_per_image")
        train_rows.append([label, kind, _num(s.get("params"), ","),
                           DASH if flops is None else f"{flops / 1e6:,.2f}", *train])
        infer_rows.append([label, _num(s.get("infer_images_per_s"), ",.0f"),
                           _num(s.get("latency_ms"), ".2f"),
                           str(s.get("device", r.env.get("device", DASH))),
                           str(s.get("precision", r.env.get("precision", DASH))),
                           str(r.env.get("threads", DASH))])
    doc.table(["Model", "Kind", "Parameters", "MFLOPs / image", "Training time", "Epochs run",
               "Best epoch", "Stopped early", "Train images/s"], train_rows, "llrrrrrlr")
    doc.table(["Model", "Inference images/s", "Latency, 1 image (ms; CPU: 1 thread)", "Device", "Precision",
               "Threads"], infer_rows, "lrrllr")
    if any(r.pretrained for r in reps.values()):
        doc.note("Pretrained runs were only evaluated here. Where their weights card records the "
                 "training (time, epochs, best epoch), the table shows it; it was measured on the "
                 "machine named in the card, which may not be this one.")


def pair_runs(a: list[RunRecord], b: list[RunRecord]) -> tuple[RunRecord, RunRecord, str]:
    """The runs McNemar and the bootstrap compare: the lowest seed both models share, else each
    model's lowest seed."""
    by_seed = {r.seed: r for r in reversed(b)}
    common = [r for r in a if r.seed is not None and r.seed in by_seed]
    if common:
        return common[0], by_seed[common[0].seed], f"seed {common[0].seed}"
    return a[0], b[0], f"{_seed(a[0])} / {_seed(b[0])}"


def compute_tests(groups: dict[str, list[RunRecord]]) -> dict[str, list[dict]]:
    """Paired tests (McNemar, bootstrap) and over-seed permutation tests for each CNN-ViT pair of a
    tier (every pair when no tier holds both families; see report/tiers.py)."""
    pairs, seeds = [], []
    for la, lb in tier_pairs(groups):
        ra, rb, used = pair_runs(groups[la], groups[lb])
        pairs.append({"a": la, "b": lb, "used": used, "acc_a": float(np.mean(ra.preds == ra.labels)),
                      "acc_b": float(np.mean(rb.preds == rb.labels)),
                      "mcnemar": stats.mcnemar(ra.preds, rb.preds, ra.labels),
                      "ci": stats.bootstrap_accuracy_diff(ra.preds, rb.preds, ra.labels,
                                                          n_boot=N_BOOT, seed=0)})
        if len(groups[la]) > 1 and len(groups[lb]) > 1:
            acc = [[r.split("test")["accuracy"] for r in groups[l]] for l in (la, lb)]
            seeds.append({"a": la, "b": lb, "test": stats.permutation_test(*acc)})
    return {"pairs": pairs, "seeds": seeds}


def _significance(doc: Doc, groups: dict[str, list[RunRecord]], tests: dict[str, list[dict]]) -> None:
    doc.section("Is the difference real?")
    n = next(iter(groups.values()))[0].n_test
    if tests["pairs"]:
        doc.p(f"Both tests pair the two models' predictions on the same {n:,} test images. "
              "McNemar's exact test looks only at the images where exactly one model is right "
              "(b: A right, B wrong; c: A wrong, B right; two-sided p = 2·P(X ≤ min(b, c)), "
              f"X ~ Binomial(b + c, ½)). The 95% interval of accuracy(A) − accuracy(B) is a paired "
              f"bootstrap over test images ({N_BOOT:,} resamples, seed 0). When a model has several "
              "seeds, the pair uses the lowest seed both models share (else each model's lowest "
              "seed); the spread over seeds is tested separately below.")
        rows = []
        for t in tests["pairs"]:
            m, ci = t["mcnemar"], t["ci"]
            rows.append([t["a"], t["b"], t["used"], pct(t["acc_a"]), pct(t["acc_b"]), pts(ci.diff),
                         f"[{100 * ci.low:+.2f}, {100 * ci.high:+.2f}]", str(m.b), str(m.c),
                         pval(m.p_value), "yes" if m.p_value < ALPHA else "no"])
        doc.table(["A", "B", "Runs", "Acc. A", "Acc. B", "A − B", "95% CI (pts)", "b", "c",
                   "McNemar p", f"p < {ALPHA}"], rows, "lllrrrrrrrl")
    multi = {label: runs for label, runs in groups.items() if len(runs) > 1}
    if multi:
        doc.h(3, "Over seeds")
        doc.p("Runs of the same model that differ only by seed (config.json train_config.seed), "
              "as mean ± standard deviation (ddof = 1) of the test metrics.")
        rows = [[label, ", ".join(str(r.seed) for r in runs),
                 _agg([r.split("test")["accuracy"] for r in runs], ".2f", 100) + "%",
                 _agg([r.split("test")["f1_weighted"] for r in runs], ".4f"),
                 _agg([r.split("test")["loss"] for r in runs], ".4f")] for label, runs in multi.items()]
        doc.table(["Model", "Seeds", "Test accuracy", "Test weighted F1", "Test loss"], rows, "llrrr")
    if tests["seeds"]:
        doc.p("Test over seeds: an exact two-sided permutation test of the difference in mean test "
              "accuracy, over all ways of relabelling the seeds' results between the two models "
              "(no normality assumption). With few seeds it is coarse, so the smallest p it can "
              "reach is shown: a large p with a large smallest-possible p means “too few seeds”, "
              "not “no difference”.")
        doc.table(["A", "B", "Mean A − B", "p", "Smallest possible p", f"p < {ALPHA}"],
                  [[t["a"], t["b"], pts(t["test"].diff), pval(t["test"].p_value),
                    pval(t["test"].min_p), "yes" if t["test"].p_value < ALPHA else "no"]
                   for t in tests["seeds"]], "llrrrl")


def _analysis(doc: Doc, groups: dict[str, list[RunRecord]], reps: dict[str, RunRecord],
              classes: list[str], tests: dict[str, list[dict]]) -> None:
    doc.section("Analysis")
    test = {label: {k: float(np.mean([r.split("test")[k] for r in runs]))
                    for k in ("accuracy", "f1_weighted", "loss")} for label, runs in groups.items()}
    text, tested, other = [], [], []   # one paragraph each: winners, significance, seeds/cost
    if len(groups) == 1:
        (label, t), = test.items()
        text.append(f"Only one model, {label}: test accuracy {pct(t['accuracy'])}, weighted F1 "
                    f"{t['f1_weighted']:.4f}, loss {t['loss']:.4f}.")
    else:
        if any(len(runs) > 1 for runs in groups.values()):
            text.append("(Test metrics are means over seeds where a model has several.)")
        for key, name, better in (("accuracy", "accuracy", max), ("f1_weighted", "weighted F1", max),
                                  ("loss", "loss", min)):
            order = sorted(test, key=lambda l: test[l][key], reverse=better is max)
            a, b = order[0], order[1]
            gap = abs(test[a][key] - test[b][key])
            fmt = (lambda v: pct(v)) if key == "accuracy" else (lambda v: f"{v:.4f}")
            size = f"{100 * gap:.2f} points" if key == "accuracy" else f"{gap:.4f}"
            text.append(f"{a} has the {'lowest' if better is min else 'highest'} test {name} "
                        f"({fmt(test[a][key])}), {size} {'below' if better is min else 'above'} "
                        f"{b} ({fmt(test[b][key])}).")
        for t in tests["pairs"]:
            m, ci = t["mcnemar"], t["ci"]
            sig, excludes_zero = m.p_value < ALPHA, ci.low > 0 or ci.high < 0
            if sig != excludes_zero:   # the two tests disagree: say so rather than pick one
                verdict = (f"; the bootstrap interval {'includes' if sig else 'excludes'} 0, so "
                           "the evidence is borderline.")
            else:
                verdict = "." if sig else ": on this test set the two cannot be told apart."
            tested.append(f"The accuracy difference {t['a']} − {t['b']} ({t['used']}) is "
                        f"{pts(ci.diff)} (95% CI {100 * ci.low:+.2f} to {100 * ci.high:+.2f}); it is "
                        f"{'' if sig else 'not '}significant at {ALPHA} by McNemar's test "
                        f"(p = {pval(m.p_value)}, b = {m.b}, c = {m.c}){verdict}")
        for t in tests["seeds"]:
            p = t["test"]
            other.append(f"Over seeds, {t['a']} − {t['b']} averages {pts(p.diff)} (permutation "
                        f"p = {pval(p.p_value)}, smallest possible {pval(p.min_p)}).")
        trained = {l: r.summary for l, r in reps.items() if not r.pretrained}
        if len(trained) > 1 and all(s.get("params") for s in trained.values()):
            big = max(trained, key=lambda l: trained[l]["params"])
            small = min(trained, key=lambda l: trained[l]["params"])
            if big != small:
                sentence = (f"{big} has {trained[big]['params'] / trained[small]['params']:.1f}× the "
                            f"parameters of {small}")
                tb, ts = trained[big].get("train_time_s"), trained[small].get("train_time_s")
                if tb and ts:
                    sentence += f" and took {tb / ts:.1f}× as long to train"
                other.append(sentence + ".")
    for paragraph in (answer(tests, groups), text, tested, other):
        if paragraph:
            doc.p(" ".join(paragraph))
    struggles = []
    for label, r in reps.items():
        f1 = [row["f1"] for row in r.split("test")["per_class"]]
        worst = np.argsort(f1, kind="stable")[:2]
        pairs = confused_pairs(np.asarray(r.split("test")["confusion_matrix"]), 1)
        s = (f"{label} struggles most with {classes[worst[0]]} (F1 {f1[worst[0]]:.3f}) and "
             f"{classes[worst[1]]} ({f1[worst[1]]:.3f})")
        if pairs:
            i, j, n = pairs[0]
            s += f"; its most frequent mistake is {classes[i]} → {classes[j]} ({n} image{'s' * (n != 1)})"
        train, t = r.split("train"), r.split("test")
        if train is not None:
            s += f"; its train − test accuracy gap is {100 * (train['accuracy'] - t['accuracy']):+.2f} points"
        struggles.append(s + ".")
    doc.p(" ".join(struggles))


def _provenance(doc: Doc, groups: dict[str, list[RunRecord]], command: str) -> None:
    doc.h(3, "Provenance")
    doc.p(f"Report built by fmbench {__version__} with the command `{command or '(not recorded)'}`, "
          "from these run directories only:")
    rows = []
    for label, runs in groups.items():
        for r in runs:
            e = r.env
            rows.append([str(r.path), label, DASH if r.seed is None else str(r.seed), r.config_hash,
                         str(e.get("git_commit") or DASH)[:12], str(e.get("python", DASH)),
                         str(e.get("torch", DASH)), str(e.get("numpy", DASH)),
                         str(r.config.get("fmbench_version", DASH))])
    doc.table(["Run directory", "Model", "Seed", "Config hash", "Git commit", "Python", "PyTorch",
               "NumPy", "fmbench"], rows, "lllllllll")
    first = next(iter(groups.values()))[0]
    doc.p(f"Test set: {first.n_test:,} images, test_hash `{first.test_hash}`.")


# ----------------------------------------------------------------------------- entry points
def _as_images(test_images: Any, n: int) -> tuple[np.ndarray | None, str]:
    if test_images is None:
        return None, ""
    arr = test_images.detach().cpu().numpy() if hasattr(test_images, "detach") else np.asarray(test_images)
    if arr.ndim != 3 or arr.shape[0] != n:
        return None, f"the given test images have shape {tuple(arr.shape)}, but the runs have {n} test outputs"
    return arr.astype(np.uint8, copy=False), ""


def write_report(groups: dict[str, list[RunRecord]], out_dir: str | Path, *,
                 test_images: Any = None, command: str = "", images_note: str = "",
                 studies: list[dict] = ()) -> Path:
    """Write report.md, report.html and figures/ for already-loaded runs; returns report.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reps = {label: runs[0] for label, runs in groups.items()}   # lowest seed of each model
    first = next(iter(reps.values()))
    classes = first.classes
    images, why = _as_images(test_images, first.n_test)
    images_note = images_note or why
    title = "fmbench report: " + " vs ".join(groups)

    def build(doc: Doc) -> None:
        n_runs = sum(len(r) for r in groups.values())
        doc.p(f"{n_runs} run{'s' if n_runs > 1 else ''} of {len(groups)} model"
              f"{'s' if len(groups) > 1 else ''} ({', '.join(groups)}), all evaluated on the same "
              f"{first.n_test:,} test images. Where a model has several seeds, the results table and "
              "the significance section aggregate them and the per-model learning curves show each "
              "seed; the other figures and tables use the model's lowest-seed run.")
        tests = compute_tests(groups)
        tiers_section(doc, groups, [(t["a"], t["b"]) for t in tests["pairs"]])
        _results(doc, groups)
        _curves(doc, groups)
        _errors(doc, reps, classes, images, images_note)
        _samples(doc, reps, classes, images, images_note)
        looks_section(doc, reps, classes, images, images_note)
        _cost(doc, reps)
        if n_runs > 1:
            _significance(doc, groups, tests)
        for study in studies:
            study_section(doc, study)
        _analysis(doc, groups, reps, classes, tests)
        _provenance(doc, groups, command)

    return publish(build, title, out_dir)


def find_test_images(n_test: int, test_hash: str, data_dir: str | Path | None = None,
                     download: bool = True) -> tuple[Any, str]:
    """The Fashion-MNIST test images in test-set order, found as the CLI finds the data, or
    (None, why not) for the note in the report."""
    if n_test != FASHION_MNIST_TEST_N:
        return None, (f"the runs were evaluated on {n_test:,} test images, not the "
                      f"{FASHION_MNIST_TEST_N:,} of Fashion-MNIST, so the images are not available")
    from fmbench.data import load_fashion_mnist

    try:
        ds = load_fashion_mnist(data_dir, download=download)
    except DataError as e:
        logger.warning("warning: example images omitted: %s", e)
        return None, f"the test images could not be loaded ({e})"
    if ds.test_hash != test_hash:
        return None, (f"the test images found ({ds.source}, test_hash {ds.test_hash[:12]}) are not "
                      f"the ones the runs were evaluated on (test_hash {test_hash[:12]})")
    return ds.test_images, ""


def build_report(paths: list[str | Path], out_dir: str | Path, *, test_images: Any = None, find_images: bool = False,
                 data_dir: str | Path | None = None, download: bool = True, command: str = "") -> Path:
    """Read run directories (and study directories: `fmbench study` output adds its section) and
    write the comparison report into `out_dir`; returns report.html.

    `test_images` is the (N, 28, 28) uint8 test set in test_outputs order. Without it, and with
    `find_images`, the data set is looked for as the CLI does (`data_dir`, `download`); the
    example-image figures are replaced by a note when there are no images.
    """
    studies, run_dirs = [], []
    for d in map(Path, paths):
        study = find_study(d) if d.is_dir() else None
        (studies.append((d, study)) if study is not None else run_dirs.append(d))
    if not run_dirs:
        raise RunDirError("no run directories given (only study directories); the report compares runs")
    groups = load_runs(run_dirs)
    first = next(iter(groups.values()))[0]
    for d, study in studies:
        if study["test_hash"] != first.test_hash:
            raise RunDirError(f"{d}: the study was run on other test data (test_hash {study['test_hash'][:12]}) "
                              f"than the runs ({first.test_hash[:12]})")
    note = ""
    if test_images is None:
        if find_images:
            test_images, note = find_test_images(first.n_test, first.test_hash, data_dir, download)
        else:
            note = "no test images were asked for (--no-images)"
    return write_report(groups, out_dir, test_images=test_images, command=command, images_note=note,
                        studies=[s for _, s in studies])
