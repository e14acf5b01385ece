"""The statistics behind every accuracy and every comparison the pipeline reports (scipy's distributions).

- One accuracy, k correct of n test images: the Clopper-Pearson (exact) and Wilson 95% intervals.
- Two runs on the same images: the per-example flags form a 2x2 table; b = images only the
  first run gets right, c = images only the second gets right. The exact McNemar test is the
  two-sided binomial test of b successes in b + c trials at p = 1/2 (scipy's `binomtest`). The difference's interval is Newcombe's hybrid score interval for paired
  proportions (his method 10: Wilson intervals of both accuracies combined with the table's
  phi), which covers the unconditional difference. Beside it, the exact interval conditional on
  the discordant images agrees with the test by construction but ignores the randomness of
  their number.
- Several seeds on the same images: the discordant pairs are pooled over seeds for the test
  and the interval; the seed-level differences are also reported as mean +- std with a
  Student-t interval.
- Several comparisons in one table: Holm's step-down adjustment of the p-values.
- A claim's verdict: supported / contradicted (significant after adjustment, in / against the
  claimed direction) or inconclusive (not significant).

Proportions are fractions in [0, 1] here; callers scale to percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Sequence

from scipy import special
from scipy import stats as sps

LEVEL = 0.95
ALPHA = 1 - LEVEL


# ------------------------------------------------------------------ one proportion
def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for k successes in n trials."""
    _check_count(k, n)
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, alpha / 2))  # the Beta(k, n - k + 1) quantile
    hi = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - alpha / 2))
    return lo, hi


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (no continuity correction)."""
    _check_count(k, n)
    z = float(sps.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _check_count(k: int, n: int) -> None:
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")


# ------------------------------------------------------------------ two runs on the same images
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of b in b + c at p = 1/2."""
    return 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)


@dataclass(frozen=True)
class Table:
    """Paired outcomes of runs A and B on the same n images: both right, A only, B only, both wrong."""

    both: int
    a_only: int
    b_only: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.a_only + self.b_only + self.neither

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B (a fraction)."""
        return (self.a_only - self.b_only) / self.n

    def __add__(self, other: "Table") -> "Table":
        return Table(self.both + other.both, self.a_only + other.a_only, self.b_only + other.b_only,
                     self.neither + other.neither)


def paired_table(a: Sequence[bool], b: Sequence[bool]) -> Table:
    """The 2x2 table of two runs' per-example flags (same images, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired flags need the same images: {len(a)} vs {len(b)}")
    pairs = [(bool(x), bool(y)) for x, y in zip(a, b)]
    return Table(pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)),
                 pairs.count((False, False)))


def newcombe_paired(t: Table, level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval (method 10) for the paired difference p_A - p_B."""
    n = t.n
    p1, p2 = (t.both + t.a_only) / n, (t.both + t.b_only) / n
    l1, u1 = wilson(t.both + t.a_only, n, level)
    l2, u2 = wilson(t.both + t.b_only, n, level)
    margins = (t.both + t.a_only) * (t.b_only + t.neither) * (t.both + t.b_only) * (t.a_only + t.neither)
    phi = (t.both * t.neither - t.a_only * t.b_only) / math.sqrt(margins) if margins else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    d = p1 - p2
    return max(-1.0, d - delta), min(1.0, d + eps)


def conditional_exact(t: Table, level: float = LEVEL) -> tuple[float, float]:
    """Exact interval of p_A - p_B given the b + c discordant images: (b + c)/n * (2 * CP(b of b + c) - 1).

    It agrees with the exact McNemar test: it excludes 0 exactly when the test's p < 1 - level.
    With no discordant image it is [0, 0] (nothing in the data separates the runs)."""
    m = t.a_only + t.b_only
    if m == 0:
        return 0.0, 0.0
    lo, hi = clopper_pearson(t.a_only, m, level)
    return m / t.n * (2 * lo - 1), m / t.n * (2 * hi - 1)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (at least two)."""
    m, s = fmean(values), stdev(values)
    half = float(sps.t.ppf(1 - (1 - level) / 2, len(values) - 1)) * s / math.sqrt(len(values))
    return m - half, m + half


@dataclass(frozen=True)
class Comparison:
    """Run A against run B on the same images, over one or more seeds (fractions, A - B)."""

    pooled: Table
    difference: float
    interval: tuple[float, float]  # Newcombe's paired score interval
    conditional: tuple[float, float]  # exact given the discordant images; excludes 0 iff p_value < 1 - level
    p_value: float
    seeds: int
    seed_differences: tuple[float, ...]
    seed_mean: float
    seed_std: float | None
    seed_interval: tuple[float, float] | None

    def as_dict(self, scale: float = 100.0) -> dict:
        """JSON-ready, differences in percentage points (scale 100)."""
        pair = lambda iv: None if iv is None else [iv[0] * scale, iv[1] * scale]  # noqa: E731
        return {"n": self.pooled.n, "seeds": self.seeds, "both": self.pooled.both, "a_only": self.pooled.a_only,
                "b_only": self.pooled.b_only, "neither": self.pooled.neither,
                "difference": self.difference * scale, "interval": pair(self.interval),
                "conditional_interval": pair(self.conditional), "p_value": self.p_value,
                "seed_differences": [d * scale for d in self.seed_differences],
                "seed_mean": self.seed_mean * scale,
                "seed_std": None if self.seed_std is None else self.seed_std * scale,
                "seed_interval": pair(self.seed_interval)}


def compare(a_per_seed: Sequence[Sequence[bool]], b_per_seed: Sequence[Sequence[bool]],
            level: float = LEVEL) -> Comparison:
    """Paired comparison of runs A and B, one flag vector per seed for each (same images within a seed)."""
    if len(a_per_seed) != len(b_per_seed) or not a_per_seed:
        raise ValueError("compare needs one flag vector per seed for both runs")
    tables = [paired_table(a, b) for a, b in zip(a_per_seed, b_per_seed)]
    pooled = tables[0]
    for t in tables[1:]:
        pooled = pooled + t
    diffs = tuple(t.difference for t in tables)
    several = len(tables) > 1
    return Comparison(
        pooled=pooled,
        difference=pooled.difference,
        interval=newcombe_paired(pooled, level),
        conditional=conditional_exact(pooled, level),
        p_value=mcnemar_exact(pooled.a_only, pooled.b_only),
        seeds=len(tables),
        seed_differences=diffs,
        seed_mean=fmean(diffs),
        seed_std=stdev(diffs) if several else None,
        seed_interval=t_interval(diffs, level) if several else None,
    )


# ------------------------------------------------------------------ several comparisons
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def verdict(difference: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """A claim that `difference` > 0: supported / contradicted when significant at `alpha`, else inconclusive."""
    if p_adjusted < alpha and difference > 0:
        return SUPPORTED
    if p_adjusted < alpha and difference < 0:
        return CONTRADICTED
    return INCONCLUSIVE
