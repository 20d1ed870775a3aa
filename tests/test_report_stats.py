"""McNemar, paired bootstrap, seed aggregation and the permutation test, on constructed cases."""

import math

import numpy as np
import pytest

from fmbench.report import stats


@pytest.mark.parametrize("b, c, expected", [
    (0, 10, 2 * 0.5**10),                                  # 0.001953125
    (10, 0, 2 * 0.5**10),
    (5, 5, 1.0),
    (1, 9, 2 * (1 + 10) / 2**10),                          # 0.021484375
    (9, 1, 0.021484375),
    (0, 0, 1.0),
    (0, 1, 1.0),                                           # 2 * 0.5 = 1
    (3, 12, 2 * sum(math.comb(15, k) for k in range(4)) / 2**15),
])
def test_mcnemar_p_known_values(b, c, expected):
    assert stats.mcnemar_p(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_p_large_counts_stay_finite():
    p = stats.mcnemar_p(3000, 3400)             # 2**6400 overflows a float; int arithmetic does not
    assert 0.0 < p < 1e-3
    assert stats.mcnemar_p(0, 5000) == 0.0      # underflows to 0, but no error
    assert stats.mcnemar_p(2500, 2500) == 1.0


def test_mcnemar_counts_from_paired_predictions():
    labels = np.zeros(30, dtype=np.int64)
    a = np.zeros(30, dtype=np.int64)            # A right everywhere ...
    b = np.zeros(30, dtype=np.int64)
    a[:9] = 1                                   # ... except 9 images that only B gets right
    b[9:10] = 1                                 # 1 image only A gets right
    a[29], b[29] = 2, 3                         # both wrong: concordant, ignored
    r = stats.mcnemar(a, b, labels)
    assert (r.b, r.c) == (1, 9)
    assert r.p_value == pytest.approx(0.021484375)


def test_mcnemar_rejects_unpaired_shapes():
    with pytest.raises(ValueError):
        stats.mcnemar(np.zeros(3), np.zeros(4), np.zeros(3))


def _constructed(n=1000, right_a=900, right_b=800, overlap=750):
    labels = np.zeros(n, dtype=np.int64)
    a = np.ones(n, dtype=np.int64)
    b = np.ones(n, dtype=np.int64)
    a[:right_a] = 0
    b[right_a - overlap:right_a - overlap + right_b] = 0
    return a, b, labels


def test_bootstrap_ci_contains_true_difference_and_is_deterministic():
    a, b, labels = _constructed()
    ci = stats.bootstrap_accuracy_diff(a, b, labels, n_boot=5000, seed=7)
    assert ci.diff == pytest.approx(0.1)
    assert ci.low < 0.1 < ci.high
    assert 0.0 < ci.low and ci.high - ci.low < 0.1
    again = stats.bootstrap_accuracy_diff(a, b, labels, n_boot=5000, seed=7)
    assert (again.low, again.high) == (ci.low, ci.high)
    other = stats.bootstrap_accuracy_diff(a, b, labels, n_boot=5000, seed=8)
    assert (other.low, other.high) != (ci.low, ci.high)


def test_bootstrap_matches_index_resampling():
    """Drawing multinomial counts is the same bootstrap as resampling image indices."""
    a, b, labels = _constructed(n=200, right_a=170, right_b=150, overlap=140)
    ci = stats.bootstrap_accuracy_diff(a, b, labels, n_boot=20000, seed=0)
    d = (a == labels).astype(float) - (b == labels)
    idx = np.random.default_rng(1).integers(0, d.size, size=(20000, d.size))
    low, high = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
    assert ci.low == pytest.approx(low, abs=0.011)
    assert ci.high == pytest.approx(high, abs=0.011)


def test_bootstrap_identical_models_gives_zero_interval():
    a, _, labels = _constructed()
    ci = stats.bootstrap_accuracy_diff(a, a, labels, n_boot=500)
    assert ci.diff == ci.low == ci.high == 0.0


def test_mean_std_over_seeds():
    ms = stats.mean_std([0.90, 0.92, 0.94])
    assert ms.mean == pytest.approx(0.92)
    assert ms.std == pytest.approx(0.02)           # sample std, ddof = 1
    assert ms.n == 3
    one = stats.mean_std([0.5])
    assert one.mean == 0.5 and math.isnan(one.std)


def test_permutation_test_exact():
    t = stats.permutation_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert t.exact
    assert t.diff == pytest.approx(-3.0)
    assert t.p_value == pytest.approx(2 / 20)      # only the observed split and its mirror
    assert t.min_p == pytest.approx(0.1)
    same = stats.permutation_test([1.0, 1.0], [1.0, 1.0])
    assert same.p_value == 1.0
    uneven = stats.permutation_test([1.0, 2.0], [10.0, 11.0, 12.0])
    assert uneven.p_value == pytest.approx(1 / 10) and uneven.min_p == pytest.approx(1 / 10)


def test_permutation_test_monte_carlo_is_seeded():
    a, b = [0.90, 0.91, 0.92, 0.93], [0.80, 0.81, 0.82, 0.83]
    t1 = stats.permutation_test(a, b, max_exact=1, n_perm=2000, seed=3)
    t2 = stats.permutation_test(a, b, max_exact=1, n_perm=2000, seed=3)
    assert not t1.exact and t1.p_value == t2.p_value
    assert t1.p_value == pytest.approx(2 / 70, abs=0.02)   # exact answer is 2/70
