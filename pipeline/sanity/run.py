"""The sanity-check stage: every rule on one model, verdicts in JSON, non-zero exit when strict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..attacks.run import load_for_dataset, test_subset
from ..core import paths
from ..core.device import resolve_device
from ..core.io import check_writable, load_tensors, read_json, write_json
from ..core.lock import run_lock
from ..core.versions import library_versions
from ..params import Params
from .rules import Check, Context, run_rules
from .sweeps import pgd_settings


def overall(checks: list[Check]) -> str:
    verdicts = {c.verdict for c in checks}
    return "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "pass"


def undefended_record(dataset: str, params: Params) -> dict[str, Any] | None:
    """Rule 10's evidence: the attack record of the undefended run, if it has been attacked."""
    path = paths.attack_result(dataset, params.sanity.undefended)
    return read_json(path, what="attack result") if path.is_file() else None


def sanity_run(dataset: str, run: str, params: Params) -> tuple[Path, str]:
    """Write the verdicts of every rule; returns (path, overall verdict). Holds the run's sanity lock."""
    with run_lock("sanity", dataset, run):
        check_writable(paths.sanity_result(dataset, run))
        return _sanity_run(dataset, run, params)


def _sanity_run(dataset: str, run: str, params: Params) -> tuple[Path, str]:
    record = read_json(paths.attack_result(dataset, run), what="attack result (run the attack stage first)")
    flags, _ = load_tensors(paths.attack_flags(dataset, run), what="attack flags (run the attack stage first)")
    model, _, meta = load_for_dataset(dataset, run)
    device = resolve_device(params.device)
    model.to(device).float()
    x, y, subset = test_subset(dataset, params.sanity.n, device)
    ctx = Context(model=model, x=x, y=y, record=record, params=params, num_classes=meta["num_classes"],
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
