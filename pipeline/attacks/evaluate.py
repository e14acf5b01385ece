"""Robust accuracy of one model under a suite of attacks.

Clean logits are computed once; each attack sees only the clean-correct examples, with the
model in eval mode and its parameters frozen; every adversarial batch is checked (range,
budget, NaN) as it is produced; per-example robust flags are kept so the worst case over
attacks is exact. Each attack runs in its own forked, freshly seeded RNG, so its result
depends neither on the attacks before it nor on the caller's random stream, and the
image-passes it spends through the model are counted. On a CPU with one torch thread the
attacks may run in forked worker processes (`workers`, pipeline/attacks/parallel.py), with
results identical to running them here one after the other.

`precision="bf16"` (params `attack.precision`, opt-in; the paper's protocol is fp32) runs
the model's forward passes under bf16 autocast with fp32 logits, so every attack's own
arithmetic (steps, projections, losses) stays fp32; attacks marked `fp32_only` (FAB, FAB-T,
Square, DeepFool: bf16 logits weakened them) keep the fp32 model (docs/benchmarks.md
measures the verdicts that change against fp32).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from ..core.errors import InvalidAdversarial
from ..core.passes import frozen, predict
from ..train.speed import Speed, forward_of
from .base import Attack
from .counting import CountingModel, Passes, isolated_rng
from .parallel import run_jobs

NORM_SLACK = 1e-6


@dataclass
class AttackOutcome:
    robust: torch.Tensor  # bool per example (False where the clean prediction is already wrong)
    validity: dict[str, float]
    seconds: float
    passes: Passes = field(default_factory=Passes)
    results: dict[str, Any] = field(default_factory=dict)  # the attack's `results()` once it ran (in any process)


@dataclass
class Evaluation:
    clean: torch.Tensor  # bool per example
    outcomes: dict[str, AttackOutcome] = field(default_factory=dict)
    clean_passes: Passes = field(default_factory=Passes)

    @property
    def worst_case_n(self) -> int:
        """Images the worst case is taken over: the first n of the attack that saw the fewest."""
        return min([len(self.clean), *(len(o.robust) for o in self.outcomes.values())])

    def worst_case(self) -> torch.Tensor:
        """Robust to every attack, on the first `worst_case_n` images (those every attack saw)."""
        m = self.worst_case_n
        flags = self.clean[:m].clone()
        for outcome in self.outcomes.values():
            flags &= outcome.robust[:m]
        return flags


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def check_valid(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, float]:
    """Rule 1 of the sanity checks, enforced on every batch: raise on any violation."""
    if x_adv.shape != x.shape:
        raise InvalidAdversarial(f"{attack.name}: returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    nan = int(torch.isnan(x_adv).sum())
    norms = perturbation_norm((x_adv - x).double(), attack.norm)
    figures = {
        "nan": nan,
        "min": float(x_adv.min()) if x_adv.numel() else 0.0,
        "max": float(x_adv.max()) if x_adv.numel() else 0.0,
        "max_norm": float(norms.max()) if len(norms) else 0.0,
        "budget": attack.eps,
    }
    if nan or figures["min"] < 0 or figures["max"] > 1 or figures["max_norm"] > attack.eps + NORM_SLACK:
        raise InvalidAdversarial(f"{attack.name}: invalid adversarial batch {figures}")
    return figures


def _merge(total: dict[str, float], batch: dict[str, float]) -> dict[str, float]:
    if not total:
        return dict(batch)
    return {"nan": total["nan"] + batch["nan"], "min": min(total["min"], batch["min"]),
            "max": max(total["max"], batch["max"]), "max_norm": max(total["max_norm"], batch["max_norm"]),
            "budget": batch["budget"]}


def run_attack(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
               batch_size: int, seed: int = 0) -> AttackOutcome:
    """Attack the clean-correct examples batch by batch; `model` should be a `CountingModel`."""
    robust = torch.zeros_like(clean)
    idx = torch.nonzero(clean).flatten()
    validity: dict[str, float] = {}
    before = _passes(model)
    tic = time.perf_counter()
    with isolated_rng(x.device, seed):
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            x_adv = attack.perturb(model, x[b], y[b]).detach()
            validity = _merge(validity, check_valid(attack, x[b], x_adv))
            robust[b] = predict(model, x_adv, batch_size) == y[b]
    if not validity:
        validity = {"nan": 0, "min": 0.0, "max": 0.0, "max_norm": 0.0, "budget": attack.eps}
    return AttackOutcome(robust, validity, time.perf_counter() - tic, _passes(model) - before)


def _attack_job(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
                batch_size: int, seed: int) -> AttackOutcome:
    """`run_attack` with the attack's `results()` carried in the outcome: a worker's attack object stays there."""
    outcome = run_attack(model, attack, x, y, clean, batch_size, seed)
    outcome.results = attack.results()
    return outcome


def _passes(model: nn.Module) -> Passes:
    p = getattr(model, "passes", None)
    return Passes(p.forward, p.backward) if p is not None else Passes()


def in_precision(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """`model` itself for fp32; for bf16 its forward under autocast, returning fp32 logits."""
    if precision == "fp32":
        return model
    if precision != "bf16":
        raise ValueError(f"attack.precision: expected fp32 or bf16, got {precision!r}")
    wrapped = forward_of(model, Speed(device.type, autocast=torch.bfloat16))
    return wrapped.train(model.training)  # a new module says 'training'; propagating that would flip `model`


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[Attack], batch_size: int,
             seed: int = 0, on_attack=None, precision: str = "fp32", n_of: Mapping[str, int] | None = None,
             workers: int | str = 1) -> Evaluation:
    """Clean accuracy once, then each attack on the clean-correct points (model frozen, eval mode).

    `n_of` gives an attack its own number of test images (the first n of `x`; at most len(x)),
    so a cheap attack can see the whole test set and an expensive one its first part.

    Under bf16 the clean predictions stay fp32 (the clean row is the paper protocol's), the
    attacks run on the bf16 forward and their verdicts are its predictions; `fp32_only`
    attacks run on the fp32 model as without the option.

    `workers` (an int or "auto", params `attack.workers`) spreads the attacks over forked
    processes on a CPU with one torch thread; the outcomes are the same and keep the suite's
    order, and `on_attack(name)` is called here as each attack finishes.
    """
    counted = model if isinstance(model, CountingModel) else CountingModel(model)
    fast = CountingModel(in_precision(counted.model, precision, x.device)) if precision != "fp32" else counted
    with frozen(counted):
        result = Evaluation(clean=predict(counted, x, batch_size) == y)
        result.clean_passes = _passes(counted)
        jobs, cost = {}, {}
        for attack in attacks:
            n = (n_of or {}).get(attack.name, len(x))
            jobs[attack.name] = functools.partial(_attack_job, counted if attack.fp32_only else fast, attack, x[:n],
                                                  y[:n], result.clean[:n], batch_size, seed)
            cost[attack.name] = attack.cost * n
        result.outcomes = run_jobs(jobs, cost, workers, x.device, on_attack)
    return result


def percent(flags: torch.Tensor) -> float:
    return 100.0 * int(flags.sum()) / len(flags) if len(flags) else float("nan")


def summarise(evaluation: Evaluation, attacks: list[Attack]) -> dict[str, Any]:
    """The result-schema entries: clean, one per attack (each with the n it saw), worst_case (over which
    attacks and images it is taken)."""
    n = len(evaluation.clean)
    out: dict[str, Any] = {"clean": {"accuracy": percent(evaluation.clean), "n_correct": int(evaluation.clean.sum()),
                                     "n": n}}
    for attack in attacks:
        o = evaluation.outcomes[attack.name]
        out[attack.name] = {"accuracy": percent(o.robust), "n_correct": int(o.robust.sum()), "n": len(o.robust),
                            **attack.describe(), **o.results, "validity": o.validity,
                            "passes": o.passes.as_dict(len(o.robust))}  # its seconds: `core.timing`
    worst = evaluation.worst_case()
    total = sum((o.passes for o in evaluation.outcomes.values()), evaluation.clean_passes)
    out["worst_case"] = {"accuracy": percent(worst), "n_correct": int(worst.sum()), "n": len(worst),
                         "images": f"the first {len(worst)} of the {n} evaluated (those every attack saw)",
                         "attacks": [a.name for a in attacks], "passes": total.as_dict(n)}
    return out
