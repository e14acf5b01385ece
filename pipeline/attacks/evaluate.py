"""Robust accuracy of one model under a suite of attacks.

Clean logits are computed once; each attack sees only the clean-correct examples, with the
model in eval mode and its parameters frozen; every adversarial batch is checked (range,
budget, NaN) as it is produced; per-example robust flags are kept so the worst case over
attacks is exact. Each attack runs block by block (pipeline/attacks/blocks.py), each block in
its own forked RNG seeded from (seed, block), so its result depends neither on the
attacks before it, nor on the caller's random stream, nor on which rank attacked which block,
and the image-passes it spends through the model are counted. On a CPU with one torch thread the
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
from ..train.distributed import SINGLE, Ranks
from .blocks import BlockResult, Store, block_seed, gather_blocks, owned, pack, spans, unpack
from .counting import CountingModel, Passes, isolated_rng
from .parallel import run_jobs

NORM_SLACK = 1e-6


@dataclass
class AttackOutcome:
    robust: torch.Tensor  # bool per example (False where the clean prediction is already wrong)
    validity: dict[str, float]
    seconds: float  # summed over its blocks, in whichever process or run attacked them (device-seconds)
    passes: Passes = field(default_factory=Passes)
    results: dict[str, Any] = field(default_factory=dict)  # the attack's `results()` over all its blocks


@dataclass
class Evaluation:
    clean: torch.Tensor  # bool per example
    outcomes: dict[str, AttackOutcome] = field(default_factory=dict)
    clean_passes: Passes = field(default_factory=Passes)
    clean_seconds: float = 0.0

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


def _attack_block(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
                  batch_size: int, seed: int) -> BlockResult:
    """Attack one block's clean-correct examples batch by batch, in an RNG seeded for this block alone."""
    robust = torch.zeros_like(clean)
    idx = torch.nonzero(clean).flatten()
    validity: dict[str, float] = {}
    attack.restore([])
    before = _passes(model)
    tic = time.perf_counter()
    with isolated_rng(x.device, seed):
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            x_adv = attack.perturb(model, x[b], y[b]).detach()
            validity = _merge(validity, check_valid(attack, x[b], x_adv))
            robust[b] = predict(model, x_adv, batch_size) == y[b]
    return BlockResult(robust.cpu(), _passes(model) - before, time.perf_counter() - tic, validity, attack.gathered())


def _clean_block(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> BlockResult:
    before = _passes(model)
    tic = time.perf_counter()
    correct = predict(model, x, batch_size) == y
    return BlockResult(correct.cpu(), _passes(model) - before, time.perf_counter() - tic)


def _blocks_job(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, clean: dict[int, torch.Tensor],
                plan: "Plan", batch_size: int, seed: int, indices: list[int]) -> bytes:
    """Blocks `indices` of one attack, each taken from the store if a run before finished it; packed (it may run
    in a worker process)."""
    done = {}
    for index in indices:
        result = plan.store.load(attack.name, index)
        if result is None:
            start, stop = plan.spans(len(x))[index]
            result = _attack_block(model, attack, x[start:stop], y[start:stop], clean[index][: stop - start].to(x.device),
                                   batch_size, block_seed(seed, index))
            plan.store.save(attack.name, index, result)
        done[(attack.name, index)] = result
    return pack(done)


@dataclass
class Plan:
    """How an evaluation is cut: blocks of `block` images (None: one block), this rank's share, where finished
    blocks are kept."""

    block: int | None = None
    ranks: Ranks = SINGLE
    store: Store = field(default_factory=lambda: Store(None))

    def spans(self, n: int) -> list[tuple[int, int]]:
        return spans(n, self.block)

    def mine(self, n: int) -> list[int]:
        return owned(len(self.spans(n)), self.ranks.rank, self.ranks.size)


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
             workers: int | str = 1, plan: Plan | None = None) -> Evaluation | None:
    """Clean accuracy once, then each attack on the clean-correct points (model frozen, eval mode).

    `n_of` gives an attack its own number of test images (the first n of `x`; at most len(x)),
    so a cheap attack can see the whole test set and an expensive one its first part.

    `plan` cuts the images into blocks (pipeline/attacks/blocks.py): each block of an attack has its
    own seeded RNG, a rank attacks its share of the blocks, and finished blocks are kept in the
    plan's store and not attacked again. Under several ranks every rank must call this; rank 0
    gets the whole evaluation, the others None. Without a plan: one block, one process.

    Under bf16 the clean predictions stay fp32 (the clean row is the paper protocol's), the
    attacks run on the bf16 forward and their verdicts are its predictions; `fp32_only`
    attacks run on the fp32 model as without the option.

    `workers` (an int or "auto", params `attack.workers`) spreads the attacks over forked
    processes on a CPU with one torch thread, in one rank only (several ranks: one process each);
    the outcomes are the same and keep the suite's order, and `on_attack(name)` is called here
    as each attack finishes.
    """
    plan = plan or Plan()
    counted = model if isinstance(model, CountingModel) else CountingModel(model)
    fast = CountingModel(in_precision(counted.model, precision, x.device)) if precision != "fp32" else counted
    with frozen(counted):
        clean: dict[tuple[str, int], BlockResult] = {}
        for index in plan.mine(len(x)):
            start, stop = plan.spans(len(x))[index]
            found = plan.store.load("clean", index)
            if found is None:
                found = _clean_block(counted, x[start:stop], y[start:stop], batch_size)
                plan.store.save("clean", index, found)
            clean[("clean", index)] = found
        flags = {index: r.flags for (_, index), r in clean.items()}
        # one job per block of each attack: the workers share even one dear attack (AutoAttack) block by block
        jobs, cost, left = {}, {}, {}
        for attack in attacks:
            n = (n_of or {}).get(attack.name, len(x))
            mine = plan.mine(n)
            for part in [[index] for index in mine] or [[]]:  # no block of this rank: one empty job all the same
                key = f"{attack.name}#{part[0] if part else ''}"
                jobs[key] = functools.partial(_blocks_job, counted if attack.fp32_only else fast, attack, x[:n], y[:n],
                                              flags, plan, batch_size, seed, part)
                cost[key] = attack.cost * sum(stop - start for start, stop in (plan.spans(n)[i] for i in part))
            left[attack.name] = len(mine) or 1

        def block_done(key: str) -> None:
            name = key.rpartition("#")[0]
            left[name] -= 1
            if left[name] == 0 and on_attack:
                on_attack(name)  # its last block

        packed = run_jobs(jobs, cost, workers if not plan.ranks.distributed else 1, x.device, block_done)
    blocks = dict(clean)
    for data in packed.values():
        blocks.update(unpack(data))
    everyone = gather_blocks(pack(blocks), plan.ranks, x.device)
    if everyone is None:
        return None
    return _assemble(everyone, attacks, len(x), {a.name: (n_of or {}).get(a.name, len(x)) for a in attacks}, plan)


def _assemble(blocks: dict[tuple[str, int], BlockResult], attacks: list[Attack], n: int, n_of: Mapping[str, int],
              plan: Plan) -> Evaluation:
    """The evaluation from every block, each attack's blocks merged in order (whoever attacked them)."""

    def merged(name: str, count: int) -> list[BlockResult]:
        return [blocks[(name, index)] for index in range(len(plan.spans(count)))]

    parts = merged("clean", n)
    result = Evaluation(clean=torch.cat([p.flags for p in parts]) if parts else torch.zeros(0, dtype=torch.bool, device="cpu"),
                        clean_passes=sum((p.passes for p in parts), Passes()),
                        clean_seconds=sum(p.seconds for p in parts))
    for attack in attacks:
        parts = merged(attack.name, n_of[attack.name])
        validity: dict[str, float] = {}
        for p in parts:
            validity = _merge(validity, p.validity) if p.validity else validity
        if not validity:
            validity = {"nan": 0, "min": 0.0, "max": 0.0, "max_norm": 0.0, "budget": attack.eps}
        attack.restore([p.gathered for p in parts])
        robust = torch.cat([p.flags for p in parts]) if parts else torch.zeros(0, dtype=torch.bool, device="cpu")
        result.outcomes[attack.name] = AttackOutcome(robust, validity, sum(p.seconds for p in parts),
                                                     sum((p.passes for p in parts), Passes()), attack.results())
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
