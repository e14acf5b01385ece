"""The statistics module against independent references: scipy and statsmodels (and brute force where they
have no counterpart)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import contingency_tables
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from pipeline.report import stats

COUNTS = [(0, 1), (1, 1), (0, 48), (5, 48), (24, 48), (47, 48), (48, 48), (0, 10000), (3, 10000), (6512, 10000),
          (9999, 10000), (10000, 10000), (512, 1000), (17, 200)]


@pytest.mark.parametrize("k, n", COUNTS)
@pytest.mark.parametrize("level", [0.95, 0.99])
def test_clopper_pearson_and_wilson_match_scipy_and_statsmodels(k, n, level):
    exact = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    assert stats.clopper_pearson(k, n, level) == pytest.approx((exact.low, exact.high), abs=1e-10)
    assert stats.clopper_pearson(k, n, level) == pytest.approx(
        proportion_confint(k, n, alpha=1 - level, method="beta"), abs=1e-10)
    score = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert stats.wilson(k, n, level) == pytest.approx((score.low, score.high), abs=1e-12)
    assert stats.wilson(k, n, level) == pytest.approx(
        proportion_confint(k, n, alpha=1 - level, method="wilson"), abs=1e-12)


@pytest.mark.parametrize("level", [0.95, 0.99, 0.6])
def test_t_interval_of_two_differences_is_the_closed_form_one(level):
    """With two values (df = 1) Student's t quantile is tan(pi * (q - 1/2)): the interval is mean +- t * s / sqrt(2)."""
    values = [0.031, -0.012]
    t = math.tan(math.pi * ((1 + level) / 2 - 0.5))
    half = t * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)
    mean = (values[0] + values[1]) / 2
    assert stats.t_interval(values, level) == pytest.approx((mean - half, mean + half), rel=1e-12)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (3, 3), (1, 9), (12, 4), (0, 25), (140, 170), (700, 620)])
def test_exact_mcnemar_matches_scipy_and_statsmodels(b, c):
    ours = stats.mcnemar_exact(b, c)
    table = [[10, b], [c, 7]]
    assert ours == pytest.approx(contingency_tables.mcnemar(table, exact=True).pvalue, rel=1e-9)
    if b + c:
        assert ours == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_paired_table_counts_every_cell():
    a = [True, True, False, False, True, False, True]
    b = [True, False, True, False, False, False, True]
    t = stats.paired_table(a, b)
    assert (t.both, t.a_only, t.b_only, t.neither) == (2, 2, 1, 2) and t.n == 7
    assert t.difference == pytest.approx(np.mean(a) - np.mean(b))
    with pytest.raises(ValueError, match="same images"):
        stats.paired_table(a, b[:-1])


@pytest.mark.parametrize("x1, x2, n", [(30, 20, 100), (45, 12, 48), (3, 0, 60)])
def test_newcombe_paired_reduces_to_the_independent_square_and_add_when_phi_is_zero(x1, x2, n):
    """With the outcomes uncorrelated (phi = 0), Newcombe's paired method 10 is his independent-samples
    method 10, which statsmodels implements (method='newcomb')."""
    # choose cells with both*neither == a_only*b_only: proportional rows
    both, a_only = x1 * x2, x1 * (n - x2)
    b_only, neither = (n - x1) * x2, (n - x1) * (n - x2)
    t = stats.Table(both, a_only, b_only, neither)  # n*n images, marginals x1/n and x2/n
    low, high = confint_proportions_2indep(x1 * n, n * n, x2 * n, n * n, method="newcomb", compare="diff")
    assert stats.newcombe_paired(t) == pytest.approx((low, high), abs=1e-12)


def test_newcombe_paired_covers_the_true_difference_about_95_percent_of_the_time():
    """Simulated paired outcomes with correlated runs: coverage within Monte-Carlo error of 95%."""
    rng = np.random.default_rng(0)
    n, trials, hits = 200, 2000, 0
    probs = np.array([0.55, 0.12, 0.05, 0.28])  # both, A only, B only, neither
    truth = probs[1] - probs[2]
    for counts in rng.multinomial(n, probs, size=trials):
        lo, hi = stats.newcombe_paired(stats.Table(*map(int, counts)))
        hits += lo <= truth <= hi
    assert 0.93 <= hits / trials <= 0.975


def test_compare_pools_seeds_and_reports_seed_level_spread():
    rng = random.Random(3)
    seeds_a, seeds_b = [], []
    for _ in range(3):
        a = [rng.random() < 0.7 for _ in range(500)]
        b = [x and rng.random() < 0.85 for x in a]  # B fails where A does, and more
        seeds_a.append(a)
        seeds_b.append(b)
    cmp = stats.compare(seeds_a, seeds_b)
    b_total = sum(x and not y for a, bb in zip(seeds_a, seeds_b) for x, y in zip(a, bb))
    c_total = sum(y and not x for a, bb in zip(seeds_a, seeds_b) for x, y in zip(a, bb))
    assert (cmp.pooled.a_only, cmp.pooled.b_only, cmp.pooled.n) == (b_total, c_total, 1500)
    assert cmp.p_value == pytest.approx(sps.binomtest(b_total, b_total + c_total).pvalue, rel=1e-9)
    diffs = [np.mean(a) - np.mean(b) for a, b in zip(seeds_a, seeds_b)]
    assert cmp.seed_differences == pytest.approx(diffs)
    assert cmp.seed_std == pytest.approx(np.std(diffs, ddof=1))
    ref = sps.t.interval(0.95, 2, loc=np.mean(diffs), scale=sps.sem(diffs))
    assert cmp.seed_interval == pytest.approx(ref, rel=1e-9)
    one = stats.compare(seeds_a[:1], seeds_b[:1])
    assert one.seeds == 1 and one.seed_std is None and one.seed_interval is None
    assert one.interval[0] < one.difference < one.interval[1]
    assert one.conditional[0] <= one.difference <= one.conditional[1]


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03, 0.2], [0.001, 0.5, 0.049, 0.012, 0.9, 0.0125], [0.3], [0.02, 0.02]])
def test_holm_matches_statsmodels(p):
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)


def test_verdicts_follow_the_sign_and_the_adjusted_level():
    assert stats.verdict(2.0, 0.01) == stats.SUPPORTED
    assert stats.verdict(-2.0, 0.01) == stats.CONTRADICTED
    assert stats.verdict(2.0, 0.06) == stats.INCONCLUSIVE
    assert stats.verdict(0.0, 0.0) == stats.INCONCLUSIVE
    assert stats.verdict(1.0, 0.04, alpha=0.01) == stats.INCONCLUSIVE


def test_bad_counts_are_refused():
    for k, n in ((-1, 5), (6, 5), (0, 0)):
        with pytest.raises(ValueError):
            stats.clopper_pearson(k, n)


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_conditional_interval_agrees_with_the_exact_test_and_scipy(level):
    """It excludes 0 exactly when McNemar's p < 1 - level; its bounds are scipy's Clopper-Pearson, rescaled."""
    n = 300
    for b in range(0, 40, 3):
        for c in range(0, 40, 4):
            t = stats.Table(n - b - c - 10, b, c, 10)
            lo, hi = stats.conditional_exact(t, level)
            p = stats.mcnemar_exact(b, c)
            if abs(p - (1 - level)) > 1e-6:
                assert (lo > 0 or hi < 0) == (p < 1 - level), (b, c)
            if b + c:
                ci = sps.binomtest(b, b + c).proportion_ci(confidence_level=level, method="exact")
                m = (b + c) / n
                assert (lo, hi) == pytest.approx((m * (2 * ci.low - 1), m * (2 * ci.high - 1)), abs=1e-10)
                assert lo <= t.difference <= hi
            else:
                assert (lo, hi) == (0.0, 0.0)
