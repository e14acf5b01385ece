"""The sanity-check stage: every rule on one model, verdicts in JSON, non-zero exit when strict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core import paths
from ..core.device import resolve_device
from ..core.io import check_writable, load_tensors, read_json, write_json
from ..core.lock import run_lock
from ..core.versions import library_versions
from ..models.subject import Subject, pipeline_subject, test_subset
from ..params import Params
from .rules import Check, run_rules
from .sweeps import Context, pgd_settings


def overall(checks: list[Check]) -> str:
    verdicts = {c.verdict for c in checks}
    return "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "pass"


def undefended_record(dataset: str, params: Params) -> dict[str, Any] | None:
    """Rule 10's evidence: the attack record of the undefended run, if it has been attacked."""
    path = paths.attack_result(dataset, params.sanity.undefended)
    return read_json(path, what="attack result") if path.is_file() else None


def sanity_run(dataset: str, run: str, params: Params) -> tuple[Path, str]:
    """Write the verdicts of every rule; returns (path, overall verdict)."""
    require_attack_outputs(dataset, run)
    return sanity_subject(pipeline_subject(dataset, run), params)


def require_attack_outputs(dataset: str, run: str) -> None:
    """The attack stage's record and flags exist (checked before any model is loaded)."""
    read_json(paths.attack_result(dataset, run), what="attack result (run the attack stage first)")
    load_tensors(paths.attack_flags(dataset, run), what="attack flags (run the attack stage first)")


def sanity_subject(subject: Subject, params: Params) -> tuple[Path, str]:
    """Every rule on `subject`, from its attack record and flags, holding its sanity lock; returns (path, verdict)."""
    with run_lock("sanity", subject.dataset, subject.run):
        check_writable(paths.sanity_result(subject.dataset, subject.run))
        return _sanity_subject(subject, params)


def _sanity_subject(subject: Subject, params: Params) -> tuple[Path, str]:
    dataset, run, model = subject.dataset, subject.run, subject.model
    record = read_json(paths.attack_result(dataset, run), what="attack result (run the attack stage first)")
    flags, _ = load_tensors(paths.attack_flags(dataset, run), what="attack flags (run the attack stage first)")
    device = resolve_device(params.device)
    model.to(device).float()
    x, y, subset = test_subset(dataset, params.sanity.n, device, params.eval_split)
    ctx = Context(model=model, x=x, y=y, record=record, params=params, num_classes=subject.meta["num_classes"],
                  flags={k: v.to(device) for k, v in flags.items()},
                  undefended_record=undefended_record(dataset, params))
    pgd_settings(ctx)  # a missing attack.pgd20 block is an error before any work
    checks = run_rules(ctx)
    verdict = overall(checks)
    out = paths.sanity_result(dataset, run)
    write_json(out, {
        "dataset": dataset,
        "run": run,
        "verdict": verdict,
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "device": str(device),
        "params": params.sanity.model_dump(),
        "versions": library_versions(),
        "rules": [c.as_dict() for c in checks],
    })
    return out, verdict
