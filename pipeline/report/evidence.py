"""Uncertainty of every accuracy, and the paper's testable claims checked with paired tests.

Each accuracy (k of n test images) gets its Clopper-Pearson and Wilson 95% intervals. The
claims table compares two runs on the same test images with the exact McNemar test on the
per-example flags of the attack stage (`<run>.flags.safetensors`), the difference's
Newcombe paired score interval (and the exact one conditional on the discordant images),
and Holm's correction over the paired claims of one dataset. Two
of the paper's claims have no per-example outcome to pair (training curves, mean input
gradients): they are stated descriptively, outside the Holm family. A run, attack or
analysis that is missing makes its row "not run".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Collection, Mapping, Sequence

from ..core import paths
from . import stats
from .records import load_flags, read_dvclive, read_optional

PP = 100.0  # fractions -> percentage points
WHITE_BOX = "white_box"  # measure: robust to every white-box attack run (per image)


@dataclass(frozen=True)
class Claim:
    """'a above b under measure' (paired), or a descriptive statement about training curves / gradients."""

    source: str
    statement: str
    a: str
    b: str = ""
    measure: str = ""
    kind: str = "paired"  # 'paired' | 'epochs' | 'gradient'
    among: tuple[str, ...] = ()  # gradient claims: the runs compared (empty: every analysed run)
    winners: tuple[str, ...] = ()  # gradient claims: the runs one of which should be smallest


#: The paper's testable claims, in the order of the table.
CLAIMS: tuple[Claim, ...] = (
    *(Claim("Table 2", f"otjr above {b} under AutoAttack", "otjr", b, "autoattack")
      for b in ("trades", "pgd_at", "alp", "sat")),
    Claim("Table 7", "opt_jr above rand_jr under white-box attacks (per image: robust to every white-box attack run)",
          "opt_jr", "rand_jr", WHITE_BOX),
    Claim("Table 7", "rand_jr high clean accuracy: rand_jr above pgd_at on clean images", "rand_jr", "pgd_at", "clean"),
    Claim("Table 7", "rand_jr low white-box accuracy: pgd_at above rand_jr under PGD-20", "pgd_at", "rand_jr", "pgd20"),
    *(Claim("Fig. 7", f"{a} (SW-based) reaches its robust accuracy in fewer epochs than sat", a, "sat", kind="epochs")
      for a in ("sw", "otjr")),
    Claim("Table 12", "otjr has the smallest input gradients of pgd_at, alp, trades, sat, otjr at every PGD-k",
          "otjr", kind="gradient", among=("pgd_at", "alp", "trades", "sat", "otjr"), winners=("otjr",)),
    Claim("Table 12", "a JR-trained run (otjr, opt_jr, rand_jr, sat_jr, their add-ons) has the smallest input "
          "gradients of all runs analysed, at every PGD-k", "", kind="gradient",
          winners=("otjr", "opt_jr", "rand_jr", "sat_jr", "otjr-awp", "otjr-lbgat")),
)


def with_variants(variants: Mapping[str, str]) -> tuple[Claim, ...]:
    """CLAIMS, then each paired claim once more for every variant (params.yaml `variants`, {run: method}) of a
    run it compares, the variant in the method's place: 'otjr_tuned above trades under AutoAttack'."""
    extra = []
    for variant, method in variants.items():
        for c in CLAIMS:
            if c.kind == "paired" and method in (c.a, c.b):
                extra.append(replace(c, statement=re.sub(rf"\b{re.escape(method)}\b", variant, c.statement),
                                     a=variant if c.a == method else c.a, b=variant if c.b == method else c.b))
    return CLAIMS + tuple(extra)


EPOCHS_FRACTION = 0.9  # Fig. 7 criterion: first epoch at 90% of the lower of the two final held-out PGD accuracies
CURVE = "val/pgd_acc"


# ------------------------------------------------------------------ one accuracy
def interval_entry(n_correct: int, n: int, level: float = stats.LEVEL) -> dict[str, Any]:
    """Accuracy (%), counts and both 95% intervals (%) of k correct of n."""
    cp = stats.clopper_pearson(n_correct, n, level)
    wi = stats.wilson(n_correct, n, level)
    return {"accuracy": PP * n_correct / n, "n_correct": n_correct, "n": n,
            "clopper_pearson": [PP * cp[0], PP * cp[1]], "wilson": [PP * wi[0], PP * wi[1]]}


def record_intervals(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """attack -> interval entry, for every entry of an attack record with n_correct (an entry's own n, if it
    states one, else the record's)."""
    return {k: interval_entry(int(v["n_correct"]), int(v.get("n", record["n"]))) for k, v in record.items()
            if isinstance(v, dict) and "n_correct" in v and int(v.get("n", record["n"])) > 0}


# ------------------------------------------------------------------ per-example flags
def white_box_attacks(kinds: Mapping[str, str]) -> list[str]:
    """The white-box instances of an attack block's `kinds` (instance name -> attack kind)."""
    from ..attacks import ATTACKS  # imports torch: only a report with per-example flags pays for it

    return [n for n, kind in kinds.items() if kind in ATTACKS.names() and ATTACKS.get(kind).access == "white-box"]


def measure_flags(flags: dict[str, list[bool]], measure: str, white_box: Collection[str] = ()) -> list[bool] | None:
    """Per-example outcome of one measure: an attack's (or 'clean') flags, or the worst case over the
    `white_box` attacks among the flags."""
    if measure != WHITE_BOX:
        return flags.get(measure)
    attacks = [n for n in sorted(flags) if n in white_box]
    if not attacks or "clean" not in flags:
        return None
    return robust_to_all(flags, attacks)


def robust_to_all(flags: dict[str, list[bool]], attacks: Sequence[str]) -> list[bool]:
    """Per image: correct and robust to every one of `attacks`, on the images all of them saw (each attack saw
    the first n of the same images, its own n: zip stops at the shortest)."""
    return [all(row) for row in zip(flags["clean"], *(flags[a] for a in attacks))]


def threat_of(entry: dict[str, Any]) -> str:
    """An attack entry's threat model, as a label: 'linf eps 0.1'."""
    return f"{entry.get('norm', '?')} eps {entry['params']['eps']:.4g}"


def threat_worst_cases(record: dict[str, Any], flags: dict[str, list[bool]]) -> dict[str, dict[str, Any]]:
    """Per threat model (norm, eps) of the record's attacks: the share of images correct and robust to every
    attack of that ball, on the first m images all of them saw (m the smallest of their n). Each value is an
    interval entry with its `attacks`. The record's `worst_case` spans every ball of the suite at once."""
    groups: dict[str, list[str]] = {}
    for name, entry in record.items():
        if isinstance(entry, dict) and "validity" in entry and "params" in entry and name in flags:
            groups.setdefault(threat_of(entry), []).append(name)
    out = {}
    for label, names in groups.items():
        robust = robust_to_all(flags, names) if "clean" in flags else []
        if robust:
            out[label] = {**interval_entry(sum(robust), len(robust)), "attacks": names}
    return out


# ------------------------------------------------------------------ claims
@dataclass
class ClaimResult:
    claim: Claim
    verdict: str  # supported / contradicted / inconclusive / holds / does not hold / not run
    reason: str = ""
    comparison: stats.Comparison | None = None
    p_holm: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        c = self.claim
        out = {"source": c.source, "claim": c.statement, "a": c.a, "b": c.b or None, "measure": c.measure or None,
               "test": {"paired": "exact McNemar, Holm-corrected", "epochs": "descriptive",
                        "gradient": "descriptive"}[c.kind],
               "verdict": self.verdict, "reason": self.reason or None, "detail": self.detail or None}
        if self.comparison is not None:
            out.update(self.comparison.as_dict(PP), p_holm=self.p_holm)
        return out


def _paired(claim: Claim, flags: dict[str, list[dict] | None], white_box: Collection[str]) -> ClaimResult:
    missing = [r for r in (claim.a, claim.b) if not flags.get(r)]
    if missing:
        return ClaimResult(claim, "not run", f"no attack results for {', '.join(missing)}")
    a = [measure_flags(f, claim.measure, white_box) for f in flags[claim.a]]
    b = [measure_flags(f, claim.measure, white_box) for f in flags[claim.b]]
    if any(x is None for x in a + b):
        return ClaimResult(claim, "not run", f"{claim.measure} not measured for both runs")
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        return ClaimResult(claim, "not run", "the two runs were not evaluated on the same images")
    return ClaimResult(claim, "", comparison=stats.compare(a, b))


def epochs_to(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The first epoch at which the curve reaches `target` (None if never)."""
    return next((e for e, v in curve if v >= target), None)


def _epochs(claim: Claim, curves: dict[str, dict]) -> ClaimResult:
    ca, cb = (curves.get(r, {}).get(CURVE) for r in (claim.a, claim.b))
    if not ca or not cb:
        missing = [r for r, c in ((claim.a, ca), (claim.b, cb)) if not c]
        return ClaimResult(claim, "not run", f"no held-out PGD accuracy per epoch for {', '.join(missing)}")
    target = EPOCHS_FRACTION * min(ca[-1][1], cb[-1][1])
    ea, eb = epochs_to(ca, target), epochs_to(cb, target)
    detail = (f"epochs to {target:.1f}% held-out PGD accuracy ({EPOCHS_FRACTION:.0%} of the lower final value): "
              f"{claim.a} {ea}, {claim.b} {eb} (of {len(ca)} / {len(cb)})")
    holds = ea is not None and (eb is None or ea < eb)
    return ClaimResult(claim, "holds" if holds else "does not hold", detail=detail)


def _gradient(claim: Claim, analysis: dict | None) -> ClaimResult:
    runs = (analysis or {}).get("runs", {})
    present = [r for r in (claim.among or runs) if r in runs]
    winners = [r for r in claim.winners if r in present]
    if not winners or len(present) < 2:
        return ClaimResult(claim, "not run", f"input-gradient analysis missing for {', '.join(claim.winners)} "
                                             "or for every run to compare with")
    steps = runs[winners[0]]["input_gradient"]["steps"]
    values = {r: runs[r]["input_gradient"]["mean_abs"] for r in present}
    smallest = [min(present, key=lambda r: values[r][i]) for i in range(len(steps))]
    wins = sum(s in winners for s in smallest)
    detail = (f"smallest at {wins} of {len(steps)} PGD-k (k = {', '.join(map(str, steps))}); "
              + ", ".join(f"k={k}: {s}" for k, s in zip(steps, smallest)) + f"; compared: {', '.join(present)}")
    return ClaimResult(claim, "holds" if wins == len(steps) else "does not hold", detail=detail)


def evaluate_claims(flags: dict[str, list[dict] | None], curves: dict[str, dict], analysis: dict | None,
                    white_box: Collection[str] = (), alpha: float = stats.ALPHA,
                    claims: Sequence[Claim] = CLAIMS) -> list[ClaimResult]:
    """Every claim of one dataset; the paired ones Holm-corrected together, then given their verdicts.
    `white_box`: the attacks the white-box worst case is taken over."""
    results = []
    for claim in claims:
        if claim.kind == "paired":
            results.append(_paired(claim, flags, white_box))
        elif claim.kind == "epochs":
            results.append(_epochs(claim, curves))
        else:
            results.append(_gradient(claim, analysis))
    tested = [r for r in results if r.comparison is not None]
    for r, p in zip(tested, stats.holm([r.comparison.p_value for r in tested])):
        r.p_holm = p
        r.verdict = stats.verdict(r.comparison.difference, p, alpha)
    return results


def dataset_inputs(dataset: str, runs: Sequence[str], further_seeds: Sequence[int] = (),
                   claims: Sequence[Claim] = CLAIMS) -> tuple[dict, dict, dict | None]:
    """Flags (every seed's), training curves and analysis (the first seed's) of one dataset's runs, as
    `evaluate_claims` takes them."""
    wanted = {r for c in claims for r in (c.a, c.b) if r}
    present = [r for r in runs if r in wanted]
    flags = {r: load_flags(dataset, r, further_seeds) for r in present}
    curves = {r: read_dvclive(paths.train_log_dir(dataset, r)) for r in present}
    path = paths.analysis_result(dataset)
    analysis = read_optional(path, "analysis result")
    if analysis:  # only the runs of this report
        analysis = {**analysis, "runs": {r: v for r, v in analysis.get("runs", {}).items() if r in runs}}
    return flags, curves, analysis


def claims_for(dataset: str, runs: Sequence[str], further_seeds: Sequence[int] = (),
               white_box: Collection[str] = (), variants: Mapping[str, str] | None = None) -> list[ClaimResult]:
    """The claims table of one dataset; paired tests pool the McNemar counts over `seed` and `further_seeds`.
    `variants` ({run: method}, those in `runs`) add their copies of the paired claims (`with_variants`)."""
    claims = with_variants({v: m for v, m in (variants or {}).items() if v in runs})
    return evaluate_claims(*dataset_inputs(dataset, runs, further_seeds, claims), white_box, claims=claims)


# ------------------------------------------------------------------ markdown
def _pp(x: float) -> str:
    return f"{x:+.2f}"


def claims_markdown(results: list[ClaimResult], alpha: float = stats.ALPHA) -> list[str]:
    """The claims table: difference (pp), 95% interval, p-values, verdict; then how each was decided."""
    tested = sum(r.comparison is not None for r in results)
    header = ["Paper", "Claim", "n", "Difference (pp)", "95% interval (pp)", "p (McNemar)", "p (Holm)", "Verdict"]
    rows = []
    for r in results:
        c = r.comparison
        if c is not None:
            n = f"{c.pooled.n // c.seeds}" + (f" x {c.seeds} seeds" if c.seeds > 1 else "")
            cells = [n, _pp(PP * c.difference), f"[{_pp(PP * c.interval[0])}, {_pp(PP * c.interval[1])}]",
                     f"{c.p_value:.3g}", f"{r.p_holm:.3g}", f"**{r.verdict}**"]
        elif r.verdict == "not run":
            cells = ["-", "-", "-", "-", "-", f"not run ({r.reason})"]
        else:
            cells = ["-", r.detail, "-", "-", "-", f"{r.verdict} (descriptive)"]
        rows.append([r.claim.source, r.claim.statement] + cells)
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * 5 + "---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    seeds_note = next((r.comparison.seeds for r in results if r.comparison), 1)
    lines += ["", f"Paired claims: the first run minus the second, on the same test images; p from the two-sided exact "
              f"McNemar test on the images only one of them gets right"
              + (" (pooled over seeds; the seed-level mean and t-interval are in metrics/summary_stats.json)"
                 if seeds_note > 1 else "")
              + "; interval: Newcombe's paired score interval (the verdict follows the exact test, and in borderline "
              "cases the two can disagree; the exact interval conditional on the discordant images, which never "
              "does, is in metrics/summary_stats.json)"
              + f"; Holm's correction over the {tested} paired claims "
              f"measured here. Verdict at the {alpha:.0%} level: supported (significant in the claimed direction), "
              "contradicted (significant against it), inconclusive (neither). The Fig. 7 and Table 12 rows have no "
              "per-image outcome to pair and are descriptive, outside the correction."]
    return lines


def interval_cells(record: dict[str, Any], cols: Sequence[str]) -> list[str]:
    """'lo-hi' (Clopper-Pearson 95%, %) per column of a robustness table."""
    entries = record_intervals(record)
    return [f"{entries[c]['clopper_pearson'][0]:.1f}-{entries[c]['clopper_pearson'][1]:.1f}" if c in entries else "-"
            for c in cols]
