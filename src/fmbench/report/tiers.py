"""What a report compares: each run's tier and family, the CNN-ViT pairs, and the answer in words.

Tiers come from the model registry: "study" (the study's two architectures) and "strong" (the
best model of each family). A report pairs every CNN with every ViT of the same tier for the
paired tests, and a hybrid (a convolutional tokenizer before a transformer, the middle ground)
with each of them; a set of runs with no such pair (say, two CNNs) falls back to every pair.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from fmbench.published import PUBLISHED
from fmbench.report.runs import RunRecord

# The pairs a tier's paired tests compare, the question's own pair first.
FAMILY_PAIRS = (("cnn", "vit"), ("cnn", "hybrid"), ("hybrid", "vit"))


def family_tier(model: str) -> tuple[str | None, str | None]:
    """("cnn" | "vit" | "hybrid", "study" | "strong") from the registry; (None, None) for an unknown model.
    For a study's result, which names its models; a run directory records its own (run_family_tier)."""
    from fmbench.models import REGISTRY

    spec = REGISTRY.get(model)
    return (spec.family, spec.tier) if spec else (None, None)


def run_family_tier(r: RunRecord) -> tuple[str | None, str | None]:
    """The family and tier the run directory records (config.json; format 1 upgraded by rundir)."""
    return r.config.get("family"), r.config.get("tier")


def family_names() -> dict[str, str]:
    from fmbench.models import FAMILIES

    return dict(FAMILIES)


def tier_names() -> dict[str, str]:
    from fmbench.models import TIERS

    return dict(TIERS)


def tier_pairs(groups: dict[str, list[RunRecord]]) -> list[tuple[str, str]]:
    """(CNN, ViT), then (CNN, hybrid) and (hybrid, ViT) labels inside each tier, in tier order;
    every pair when no tier holds two of the families."""
    info = {label: run_family_tier(runs[0]) for label, runs in groups.items()}
    pairs = []
    for tier in tier_names():
        for fa, fb in FAMILY_PAIRS:
            pairs += [(a, b) for a, (f, t) in info.items() if t == tier and f == fa
                      for b, (g, u) in info.items() if u == tier and g == fb]
    return pairs or list(combinations(groups, 2))


def how_obtained(r: RunRecord) -> str:
    """One phrase: trained here with which preset and budget, or shipped weights evaluated."""
    s, preset = r.summary, r.config.get("preset", "?")
    epochs, secs = s.get("epochs_run"), s.get("train_time_s")
    budget = f"{epochs} epochs" if epochs else "?"
    if secs:
        budget += f", {secs / 60:.1f} min of training"
    if r.pretrained:
        return f"shipped weights, evaluated here (trained with preset `{preset}`: {budget})"
    return f"trained here with preset `{preset}` ({budget})"


def tiers_section(doc: Any, groups: dict[str, list[RunRecord]], pairs: list[tuple[str, str]]) -> None:
    """The "what is compared" section: tier, family and provenance of every model, and the pairs tested."""
    doc.section("What is compared")
    names = tier_names()
    rows = []
    for label, runs in groups.items():
        fam, tier = run_family_tier(runs[0])
        rows.append([names.get(tier, "—") if tier else "—", label, family_names().get(fam, "—"),
                     how_obtained(runs[0]) + (f"; {len(runs)} seeds" if len(runs) > 1 else "")])
    doc.table(["Tier", "Model", "Family", "How it was obtained"], rows, "llll")
    if not pairs:
        return
    doc.p("Paired tests (section “Is the difference real?”) compare " +
          "; ".join(f"{a} with {b}" for a, b in pairs) + ". "
          "Within a tier the families get the same kind of budget, so a difference there is "
          "about the architecture, not the training.")


def answer(tests: dict[str, list[dict]], groups: dict[str, list[RunRecord]]) -> list[str]:
    """Sentences that answer the question "CNN or ViT?" for each tested CNN-ViT pair of a tier, then
    where each tier's hybrid stands against them."""
    names, out, gaps, middle = tier_names(), [], [], []
    for t in tests["pairs"]:
        (fa, ta), (fb, tb) = (run_family_tier(groups[t[k]][0]) for k in ("a", "b"))
        if "hybrid" in (fa, fb) and ta == tb:
            middle.append(_hybrid_sentence(t, fa == "hybrid", fb if fa == "hybrid" else fa))
            continue
        if {fa, fb} != {"cnn", "vit"} or ta != tb:
            continue
        cnn, vit, acc, gap, lo, hi, sig = _oriented(t, fa == "cnn")
        winner = "the CNN" if gap > 0 else "the ViT"
        out.append(f"Among {names[ta]}, {winner} is more accurate: {cnn} {100 * acc[cnn]:.2f}% vs {vit} "
                   f"{100 * acc[vit]:.2f}%, a gap of {100 * abs(gap):.2f} points (95% CI of CNN − ViT "
                   f"{100 * lo:+.2f} to {100 * hi:+.2f}; "
                   f"{'significant' if sig else 'not significant'} by McNemar's test).")
        gaps.append((ta, gap))
        if cnn in PUBLISHED and vit in PUBLISHED:
            study = PUBLISHED[cnn]["test"].accuracy - PUBLISHED[vit]["test"].accuracy
            presets = sorted({str(groups[l][0].config.get("preset", "?")) for l in (cnn, vit)})
            out.append(f"The study reported {100 * PUBLISHED[cnn]['test'].accuracy:.1f}% vs "
                       f"{100 * PUBLISHED[vit]['test'].accuracy:.1f}% for these two architectures, a "
                       f"{100 * study:.1f}-point gap; with preset{'s' * (len(presets) > 1)} "
                       f"{' and '.join(f'`{p}`' for p in presets)} it is {100 * gap:.2f} points here.")
    if gaps:
        if all(g > 0 for _, g in gaps) or all(g < 0 for _, g in gaps):
            fam = "CNN" if gaps[0][1] > 0 else "ViT"
            out.insert(0, f"The answer on this test set: the {fam} is more accurate in "
                          f"{'every tier' if len(gaps) > 1 else 'the tier'} compared.")
        else:
            out.insert(0, "The answer on this test set depends on the tier: the families trade places.")
    if len(gaps) >= 2:
        (t1, g1), (t2, g2) = gaps[0], gaps[-1]
        trend = "narrows" if abs(g2) < abs(g1) else "widens"
        out.append(f"The CNN − ViT gap {trend} from {100 * g1:+.2f} points ({names[t1]}) to "
                   f"{100 * g2:+.2f} points ({names[t2]}).")
    return out + middle


def _oriented(t: dict, first_is_a: bool) -> tuple:
    """A tested pair read from the side of one model ("first"): (first, second, accuracies by label,
    first − second, the 95% CI of that difference, significant by McNemar and the interval)."""
    first, second = (t["a"], t["b"]) if first_is_a else (t["b"], t["a"])
    acc = {t["a"]: t["acc_a"], t["b"]: t["acc_b"]}
    lo, hi = (t["ci"].low, t["ci"].high) if first_is_a else (-t["ci"].high, -t["ci"].low)
    sig = t["mcnemar"].p_value < 0.05 and (lo > 0 or hi < 0)
    return first, second, acc, acc[first] - acc[second], lo, hi, sig


def _hybrid_sentence(t: dict, hybrid_is_a: bool, other_family: str) -> str:
    """The middle ground in one sentence: the hybrid against the CNN or the ViT of its tier."""
    hybrid, other, acc, gap, lo, hi, sig = _oriented(t, hybrid_is_a)
    other_name = family_names()[other_family]
    return (f"The hybrid {hybrid} (a convolutional tokenizer before a transformer) is "
            f"{100 * abs(gap):.2f} points {'above' if gap > 0 else 'below'} the {other_name} "
            f"{other}: {100 * acc[hybrid]:.2f}% vs {100 * acc[other]:.2f}% (95% CI of hybrid − "
            f"{other_name} {100 * lo:+.2f} to {100 * hi:+.2f}; "
            f"{'significant' if sig else 'not significant'} by McNemar's test).")
