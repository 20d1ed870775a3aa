"""Is a difference between two models real? Paired tests on one test set, and tests over seeds.

No scipy: the McNemar p-value is an exact binomial sum in integers, the bootstrap draws
multinomial counts, and the test over seeds is an exact permutation test.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test. b: A right and B wrong; c: A wrong and B right."""

    p_value: float
    b: int
    c: int


@dataclass(frozen=True)
class BootstrapCI:
    """Accuracy of A minus accuracy of B, with a percentile bootstrap interval."""

    diff: float
    low: float
    high: float
    level: float


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof=1; NaN for a single value) over n seeds."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class PermutationTest:
    """Two-sided permutation test of the difference in means; `min_p` is its resolution."""

    p_value: float
    min_p: float
    diff: float
    exact: bool


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    # integer numerator over 2**n: exact, and Python's int / int rounds correctly (no overflow)
    return min(1.0, 2 * tail / 2**n)


def mcnemar(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> McNemar:
    """McNemar's exact test on paired predictions of two models on the same test images."""
    right_a, right_b = _paired_correct(pred_a, pred_b, labels)
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    return McNemar(p_value=mcnemar_p(b, c), b=b, c=c)


def bootstrap_accuracy_diff(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, *,
                            n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    """Paired bootstrap CI of accuracy(A) - accuracy(B), resampling test images with replacement.

    Each image contributes d = right_a - right_b in {-1, 0, +1}. Resampling N images with
    replacement draws the counts of d = +1, -1, 0 from Multinomial(N, observed frequencies), so
    drawing those counts directly is the same bootstrap in O(n_boot) memory instead of O(n_boot*N).
    """
    right_a, right_b = _paired_correct(pred_a, pred_b, labels)
    n = right_a.size
    d = right_a.astype(np.int64) - right_b.astype(np.int64)
    freq = np.array([np.sum(d == 1), np.sum(d == -1), np.sum(d == 0)], dtype=np.float64) / n
    counts = np.random.default_rng(seed).multinomial(n, freq, size=n_boot)  # (n_boot, 3)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    alpha = (1.0 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return BootstrapCI(diff=float(d.mean()), low=float(low), high=float(high), level=level)


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample standard deviation of one metric over seeds."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return MeanStd(mean=float(x.mean()), std=std, n=int(x.size))


def permutation_test(a: Sequence[float], b: Sequence[float], *, max_exact: int = 200_000,
                     n_perm: int = 100_000, seed: int = 0) -> PermutationTest:
    """Two-sided permutation test of mean(a) - mean(b) over seeds (unpaired, no normality assumed).

    Exact over all C(na + nb, na) relabellings when there are at most `max_exact`, else Monte
    Carlo with a seeded generator. With few seeds the test is coarse: 3 vs 3 seeds cannot give
    p below 0.1, which `min_p` reports so that a large p is not read as "no difference".
    """
    x = np.concatenate([np.asarray(a, np.float64), np.asarray(b, np.float64)])
    na, nb = len(a), len(b)
    if na < 1 or nb < 1:
        raise ValueError("both groups need at least one value")
    observed = float(np.mean(a) - np.mean(b))
    total = x.sum()
    eps = 1e-12 * max(1.0, float(np.abs(x).max()))
    n_splits = math.comb(na + nb, na)
    if n_splits <= max_exact:
        idx = np.array(list(itertools.combinations(range(na + nb), na)), dtype=np.int64)
        sum_a = x[idx].sum(axis=1)
        stats = np.abs(sum_a / na - (total - sum_a) / nb)
        p = float(np.mean(stats >= abs(observed) - eps))
        min_p = float(np.mean(stats >= stats.max() - eps))
        return PermutationTest(p_value=p, min_p=min_p, diff=observed, exact=True)
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(x, (n_perm, 1)), axis=1)       # (n_perm, na + nb)
    stats = np.abs(perms[:, :na].mean(axis=1) - perms[:, na:].mean(axis=1))
    hits = int(np.sum(stats >= abs(observed) - eps))
    return PermutationTest(p_value=(hits + 1) / (n_perm + 1), min_p=1 / (n_perm + 1),
                           diff=observed, exact=False)


def _paired_correct(pred_a: np.ndarray, pred_b: np.ndarray,
                    labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_a, pred_b, labels = (np.asarray(v) for v in (pred_a, pred_b, labels))
    if not (pred_a.shape == pred_b.shape == labels.shape and labels.ndim == 1 and labels.size):
        raise ValueError(f"paired predictions need equal 1-d shapes, got {pred_a.shape}, "
                         f"{pred_b.shape}, {labels.shape}")
    return pred_a == labels, pred_b == labels


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (then the normal's 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% t-interval of the mean over seeds, (lo, hi); one value gives (value, value)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, m
    t = _T975[x.size - 2] if x.size - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m - half, m + half
