"""Sanity rules that rule out gradient masking (Carlini et al. 2019; docs/design.md section 4).

Each rule reads a `Context` (the model, its attack record and per-example flags, the
sanity subset) and returns a `Check` with its figures, tolerance and a pass / warn / fail
verdict. Accuracies are compared with tol = max(0.5 pp, two binomial standard errors);
where the attack stage's per-example flags allow it, the examples behind a comparison are
counted too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

import torch

from ..attacks import ATTACKS
from .sweeps import Context, input_gradients, noise_robust, pgd_robust, pgd_settings, repeated_logits

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


RULES: list[tuple[int, str, Callable[[Context], Check]]] = []


def rule(number: int, name: str):
    def add(fn: Callable[[Context], Check]):
        RULES.append((number, name, fn))
        RULES.sort(key=lambda r: r[0])
        return fn

    return add


def run_rules(ctx: Context) -> list[Check]:
    """Every registered rule, in order, with its id and name filled in."""
    checks = []
    for number, name, fn in RULES:
        check = fn(ctx)
        check.id, check.name = number, name
        checks.append(check)
    return checks


def attack_entries(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-attack entries of a result record (those carrying validity figures)."""
    return {k: v for k, v in record.items() if isinstance(v, dict) and "validity" in v}


def comparable_entries(record: dict[str, Any], flags: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Attack entries with accuracies on the same images: as recorded when every attack saw the same n,
    else restated from the per-example flags on the first m images, m the smallest attack's n."""
    entries = {k: {**v, "n": int(v.get("n", record["n"]))} for k, v in attack_entries(record).items()}
    m = min((e["n"] for e in entries.values()), default=0)
    if all(e["n"] == m for e in entries.values()):
        return entries
    missing = [k for k in entries if k not in flags]
    if missing:
        raise ValueError(f"attacks saw different n but the per-example flags of {', '.join(missing)} are missing")
    restated = {}
    for name, entry in entries.items():
        robust = flags[name][:m]
        restated[name] = {**entry, "n": m, "n_correct": int(robust.sum()),
                          "accuracy": 100.0 * int(robust.sum()) / m}
    return restated


def compared(ctx: Context) -> dict[str, dict[str, Any]]:
    """The attack entries as the rules compare them: on the images every attack saw (computed once)."""
    key = ("compared",)
    if key not in ctx.measured:
        ctx.measured[key] = comparable_entries(ctx.record, ctx.flags)
    return ctx.measured[key]


def compared_n(ctx: Context) -> int:
    """How many images the compared accuracies are taken over."""
    return min((int(e["n"]) for e in compared(ctx).values()), default=int(ctx.record["n"]))


def attack_class(ctx: Context, name: str):
    """The registered kind of the record's attack `name` (an instance of params.yaml's attack block), if known."""
    kind = ctx.params.attack.kinds.get(name)
    return ATTACKS.get(kind) if kind in ATTACKS else None


def same_threat(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Both entries attack the same ball (norm and eps), so their accuracies are comparable."""
    return a.get("norm") == b.get("norm") and math.isclose(a["params"]["eps"], b["params"]["eps"])


def of_kind(ctx: Context, entries: dict[str, dict], ref: dict, *, access: str | None = None,
            iterative: bool | None = None) -> dict:
    """Entries comparable with `ref` whose attack kind has the given access / iterative flag."""
    out = {}
    for name, entry in entries.items():
        cls = attack_class(ctx, name)
        if cls is None or entry is ref or not same_threat(entry, ref):
            continue
        if (access is None or cls.access == access) and (iterative is None or cls.iterative == iterative):
            out[name] = entry
    return out


def only_fooled_by(ctx: Context, attacker: str, others: list[str]) -> int | None:
    """Examples `attacker` fooled while every attack in `others` did not (None without flags)."""
    if attacker not in ctx.flags or any(o not in ctx.flags for o in others) or not others or "clean" not in ctx.flags:
        return None
    m = min(len(ctx.flags[k]) for k in [attacker, *others])  # the images all of them saw
    robust_to_others = torch.stack([ctx.flags[o][:m] for o in others]).all(0)
    return int((~ctx.flags[attacker][:m] & ctx.flags["clean"][:m] & robust_to_others).sum())


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
    if not figures:
        return Check(1, "", "warn", "the record holds no attack")
    return Check(1, "", "pass", f"{len(figures)} attacks checked on every batch", figures)


@rule(2, "the model is deterministic in eval mode")
def deterministic(ctx: Context) -> Check:
    first, second = repeated_logits(ctx)
    diff = float((first - second).abs().max()) if first.numel() else 0.0
    scale = float(first.abs().max()) if first.numel() else 1.0
    flipped = int((first.argmax(1) != second.argmax(1)).sum())
    figures = {"max_logit_difference": diff, "max_logit": scale, "flipped_predictions": flipped, "n": len(ctx.y)}
    if flipped or diff > 1e-3 * max(scale, 1.0):
        return Check(2, "", "fail", f"two eval-mode passes differ ({flipped} predictions flip): randomised model",
                     figures)
    if diff > 1e-5 * max(scale, 1.0):
        return Check(2, "", "warn", "logits differ slightly between passes (non-deterministic kernels?)", figures)
    return Check(2, "", "pass", "two eval-mode passes agree", figures)


@rule(3, "iterative attacks are at least as strong as FGSM")
def iterative_beats_single_step(ctx: Context) -> Check:
    entries = compared(ctx)
    if "fgsm" not in entries:
        return Check(3, "", "skip", "FGSM was not run")
    fgsm = entries["fgsm"]["accuracy"]
    tol = tolerance_pp(fgsm, compared_n(ctx))
    iterative = {k: v["accuracy"] for k, v in of_kind(ctx, entries, entries["fgsm"], iterative=True).items()}
    if not iterative:
        return Check(3, "", "skip", "no iterative attack on FGSM's threat model was run")
    weaker = {k: a for k, a in iterative.items() if a > fgsm + tol}
    figures = {"fgsm": fgsm, **iterative, "only_fgsm_fools": {k: only_fooled_by(ctx, "fgsm", [k]) for k in iterative}}
    if weaker:
        return Check(3, "", "fail", f"weaker than FGSM: {', '.join(weaker)}", figures, tol)
    return Check(3, "", "pass", "every iterative attack <= FGSM + tol", figures, tol)


@rule(4, "more PGD steps never help the model (PGD-100 vs PGD-20; steps sweep)")
def more_steps_not_weaker(ctx: Context) -> Check:
    entries = compared(ctx)
    sweep = ctx.steps_sweep
    problems, warnings = [], []
    figures: dict[str, Any] = dict(sweep)  # steps and accuracy at the top, where the report looks for sweeps
    tol = None
    if "pgd20" in entries and "pgd100" in entries:
        a20, a100 = entries["pgd20"]["accuracy"], entries["pgd100"]["accuracy"]
        tol = tolerance_pp(a20, compared_n(ctx))
        figures.update(pgd20=a20, pgd100=a100, only_pgd20_fools=only_fooled_by(ctx, "pgd20", ["pgd100"]))
        if a100 > a20 + tol:
            problems.append(f"PGD-100 ({a100:.2f}) weaker than PGD-20 ({a20:.2f})")
        elif a20 - a100 > 2 * tol:
            warnings.append(f"PGD-100 ({a100:.2f}) much stronger than PGD-20 ({a20:.2f}): PGD-20 has not converged")
    steps, accs, n = sweep["steps"], sweep["accuracy"], sweep["n"]
    for (s0, a0), (s1, a1) in zip(zip(steps, accs), zip(steps[1:], accs[1:])):
        if a1 > a0 + tolerance_pp(a0, n):
            problems.append(f"accuracy rises from {a0:.2f} at {s0} steps to {a1:.2f} at {s1} steps")
    if problems:
        return Check(4, "", "fail", "; ".join(problems), figures, tol)
    if warnings:
        return Check(4, "", "warn", "; ".join(warnings), figures, tol)
    return Check(4, "", "pass", "accuracy does not rise with more steps", figures, tol)


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


@rule(6, "white-box attacks are at least as strong as black-box ones")
def white_box_beats_black_box(ctx: Context) -> Check:
    entries = compared(ctx)
    black = {k: v for k, v in entries.items() if (c := attack_class(ctx, k)) is not None and c.access == "black-box"}
    if not black:
        return Check(6, "", "skip", "no black-box attack was run")
    problems, figures, tol_max = [], {}, 0.0
    for name, entry in black.items():
        white = of_kind(ctx, entries, entry, access="white-box")
        if not white:
            continue
        best_name = min(white, key=lambda k: white[k]["accuracy"])
        best = white[best_name]["accuracy"]
        tol = tolerance_pp(best, compared_n(ctx))
        tol_max = max(tol_max, tol)
        figures[name] = {"accuracy": entry["accuracy"], "best_white_box": best_name, "best_white_box_accuracy": best,
                         "only_this_fools": only_fooled_by(ctx, name, list(white))}
        if entry["accuracy"] < best - tol:
            problems.append(f"{name} ({entry['accuracy']:.2f}) beats every white-box attack (best {best_name} {best:.2f})")
    if not figures:
        return Check(6, "", "skip", "no white-box attack on the black-box attacks' threat model")
    if problems:
        return Check(6, "", "fail", "; ".join(problems) + ": gradients are masked", figures, tol_max)
    return Check(6, "", "pass", "the best white-box attack is at least as strong as every black-box one", figures,
                 tol_max)


@rule(7, "AutoAttack is at least as strong as every single white-box attack")
def autoattack_strongest(ctx: Context) -> Check:
    entries = compared(ctx)
    if "autoattack" not in entries:
        return Check(7, "", "skip", "AutoAttack was not run")
    aa = entries["autoattack"]["accuracy"]
    tol = tolerance_pp(aa, compared_n(ctx))
    white = of_kind(ctx, entries, entries["autoattack"], access="white-box")
    stronger = {k: v["accuracy"] for k, v in white.items() if aa > v["accuracy"] + tol}
    figures = {"autoattack": aa, **{k: v["accuracy"] for k, v in white.items()},
               "fooled_by_one_not_autoattack": {k: only_fooled_by(ctx, k, ["autoattack"]) for k in white}}
    if stronger:
        return Check(7, "", "fail", f"AutoAttack weaker than {', '.join(stronger)}", figures, tol)
    return Check(7, "", "pass", f"AutoAttack <= each of {len(white)} white-box attacks + tol", figures, tol)


@rule(8, "input gradients are not zero; the margin loss is not much stronger than CE")
def gradients_alive(ctx: Context) -> Check:
    norms = input_gradients(ctx)
    zero_margin, zero_ce = int((norms["margin"] == 0).sum()), int((norms["ce"] == 0).sum())
    figures: dict[str, Any] = {"points": len(norms["margin"]), "zero_margin_gradients": zero_margin,
                               "zero_ce_gradients": zero_ce,
                               "median_margin_gradient_l1": float(norms["margin"].median()) if len(norms["margin"]) else None}
    entries = compared(ctx)
    tol = None
    warnings = []
    if zero_ce:
        warnings.append(f"{zero_ce} points have a zero CE gradient (saturated softmax)")
    if "pgd20" in entries and "cw_inf" in entries:
        ce, cw = entries["pgd20"]["accuracy"], entries["cw_inf"]["accuracy"]
        tol = tolerance_pp(ce, compared_n(ctx))
        figures.update(pgd20=ce, cw_inf=cw)
        if cw < ce - tol:
            warnings.append(f"CW-inf ({cw:.2f}) much stronger than CE-PGD ({ce:.2f}): CE saturates")
    if not len(norms["margin"]):
        return Check(8, "", "warn", "no correctly classified point to take gradients at", figures, tol)
    if zero_margin:
        return Check(8, "", "fail", f"{zero_margin} of {len(norms['margin'])} points have a zero input gradient",
                     figures, tol)
    if warnings:
        return Check(8, "", "warn", "; ".join(warnings), figures, tol)
    return Check(8, "", "pass", "every input gradient is non-zero; CE and margin attacks agree", figures, tol)


@rule(9, "uniform noise in the eps-ball is weaker than PGD")
def noise_weaker(ctx: Context) -> Check:
    eps, step = pgd_settings(ctx)
    noise = noise_robust(ctx)
    pgd = pgd_robust(ctx, eps, step, 20, ctx.params.seed + 20)
    a_noise, a_pgd = 100.0 * float(noise.float().mean()), 100.0 * float(pgd.float().mean())
    tol = tolerance_pp(a_pgd, len(ctx.y))
    figures = {"noise": a_noise, "pgd20": a_pgd, "samples": ctx.params.sanity.noise_samples, "eps": eps,
               "noise_fools_pgd_does_not": int((~noise & pgd).sum()), "n": len(ctx.y)}
    if a_noise < a_pgd - tol:
        return Check(9, "", "fail", f"random noise ({a_noise:.2f}) is stronger than PGD ({a_pgd:.2f})", figures, tol)
    return Check(9, "", "pass", "PGD is at least as strong as random noise", figures, tol)


@rule(10, "an undefended model falls to near zero under PGD-20")
def undefended_falls(ctx: Context) -> Check:
    s = ctx.params.sanity
    rec = ctx.undefended_record
    if rec is None or "pgd20" not in attack_entries(rec):
        return Check(10, "", "warn", f"no PGD-20 result of the undefended run '{s.undefended}' to check")
    acc = rec["pgd20"]["accuracy"]
    figures = {"run": s.undefended, "pgd20": acc, "bound": s.undefended_max_accuracy, "n": rec["n"]}
    if acc > s.undefended_max_accuracy:
        return Check(10, "", "fail", f"undefended '{s.undefended}' keeps {acc:.2f}% under PGD-20 "
                     f"(> {s.undefended_max_accuracy}): the attack is too weak", figures)
    return Check(10, "", "pass", f"undefended '{s.undefended}' falls to {acc:.2f}% under PGD-20", figures)


#: What every record must state (docs/design.md: n, subset, seeds, hyper-parameters, versions).
RECORD_KEYS = ("n", "subset", "seed", "versions")
ENTRY_KEYS = ("params", "norm", "implementation", "implementation_version", "passes")


@rule(11, "the record states n, subset, seed, every hyper-parameter and library versions")
def record_complete(ctx: Context) -> Check:
    missing = [k for k in RECORD_KEYS if k not in ctx.record]
    versions = ctx.record.get("versions", {})
    missing += [f"versions.{lib}" for lib in ("torch", "torchattacks") if versions.get(lib, "not installed") == "not installed"]
    for name, entry in attack_entries(ctx.record).items():
        missing += [f"{name}.{k}" for k in ENTRY_KEYS if k not in entry]
        if "unknown" in str(entry.get("implementation_version", "")):
            missing.append(f"{name}.implementation_version")
    figures = {k: ctx.record.get(k) for k in ("n", "subset", "seed")}
    if missing:
        return Check(11, "", "fail", f"missing: {', '.join(missing)}", figures)
    return Check(11, "", "pass", "n, subset, seed, hyper-parameters, implementations and versions recorded", figures)
