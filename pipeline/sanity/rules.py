"""Sanity rules that rule out gradient masking (Carlini et al. 2019; design.md section 4).

Each rule reads a `Context` (the model, its attack record, the test subset) and returns a
`Check` with its figures, tolerance and a pass / warn / fail verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Callable, Literal

import torch
from torch import nn

from ..params import Params

Verdict = Literal["pass", "warn", "fail", "skip"]


def tolerance_pp(accuracy_pct: float, n: int) -> float:
    """max(0.5 pp, two binomial standard errors), in percentage points."""
    p = min(max(accuracy_pct / 100.0, 0.0), 1.0)
    return max(0.5, 200.0 * math.sqrt(p * (1 - p) / max(n, 1)))


@dataclass
class Check:
    id: int
    name: str
    verdict: Verdict
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)
    tolerance_pp: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    record: dict[str, Any]  # the attack stage's JSON for this model
    params: Params
    num_classes: int

    @cached_property
    def eps_sweep(self) -> dict[str, Any]:
        from .sweeps import eps_sweep

        return eps_sweep(self)


RULES: list[tuple[int, str, Callable[[Context], Check]]] = []


def rule(number: int, name: str):
    def add(fn: Callable[[Context], Check]):
        RULES.append((number, name, fn))
        RULES.sort(key=lambda r: r[0])
        return fn

    return add


def attack_entries(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-attack entries of a result record (those carrying validity figures)."""
    return {k: v for k, v in record.items() if isinstance(v, dict) and "validity" in v}


@rule(1, "adversarial examples are valid (in [0,1], within eps, no NaN)")
def valid_examples(ctx: Context) -> Check:
    bad = {}
    for name, entry in attack_entries(ctx.record).items():
        v = entry["validity"]
        if v["nan"] or v["min"] < 0 or v["max"] > 1 or v["max_norm"] > v["budget"] + 1e-6:
            bad[name] = v
    figures = {name: e["validity"] for name, e in attack_entries(ctx.record).items()}
    if bad:
        return Check(1, "", "fail", f"invalid examples from {', '.join(bad)}", figures)
    return Check(1, "", "pass", f"{len(figures)} attacks checked on every batch", figures)


@rule(3, "iterative attacks are at least as strong as FGSM")
def iterative_beats_single_step(ctx: Context) -> Check:
    entries = attack_entries(ctx.record)
    if "fgsm" not in entries:
        return Check(3, "", "skip", "FGSM was not run")
    fgsm = entries["fgsm"]["accuracy"]
    tol = tolerance_pp(fgsm, ctx.record["n"])
    iterative = {k: v["accuracy"] for k, v in entries.items() if k in ITERATIVE}
    if not iterative:
        return Check(3, "", "skip", "no iterative attack was run")
    weaker = {k: a for k, a in iterative.items() if a > fgsm + tol}
    figures = {"fgsm": fgsm, **iterative}
    if weaker:
        return Check(3, "", "fail", f"weaker than FGSM: {', '.join(weaker)}", figures, tol)
    return Check(3, "", "pass", "every iterative attack <= FGSM + tol", figures, tol)


#: Attacks that iterate on the white-box gradient (compared with FGSM by rule 3).
ITERATIVE = {"pgd20", "pgd100", "mim", "cw_inf", "autoattack"}


@rule(5, "accuracy falls with eps: equals clean at 0, near chance at large eps")
def eps_monotone(ctx: Context) -> Check:
    sweep = ctx.eps_sweep
    accs, eps, n = sweep["accuracy"], sweep["eps"], sweep["n"]
    problems = []
    if eps[0] == 0 and abs(accs[0] - sweep["clean"]) > 1e-9:
        problems.append(f"accuracy at eps=0 ({accs[0]:.2f}) differs from clean ({sweep['clean']:.2f})")
    for (e0, a0), (e1, a1) in zip(zip(eps, accs), zip(eps[1:], accs[1:])):
        if a1 > a0 + tolerance_pp(a0, n):
            problems.append(f"accuracy rises from {a0:.2f} at eps={e0:.4g} to {a1:.2f} at eps={e1:.4g}")
    chance = 100.0 / ctx.num_classes
    tol_last = tolerance_pp(chance, n)
    if accs[-1] > chance + tol_last:
        problems.append(f"accuracy {accs[-1]:.2f} at eps={eps[-1]:.4g} is above chance {chance:.2f} + {tol_last:.2f}")
    figures = {**sweep, "chance": chance}
    if problems:
        return Check(5, "", "fail", "; ".join(problems), figures, tol_last)
    return Check(5, "", "pass", "non-increasing in eps and near chance at the largest eps", figures, tol_last)
