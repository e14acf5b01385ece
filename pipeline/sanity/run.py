"""The sanity-check stage: every rule on one model, verdicts in JSON, non-zero exit when strict."""

from __future__ import annotations

from pathlib import Path

import torch

from ..attacks.run import load_for_dataset, test_subset
from ..core import paths
from ..core.device import resolve_device
from ..core.io import read_json, write_json
from ..core.versions import library_versions
from ..params import Params
from .rules import RULES, Check, Context


def overall(checks: list[Check]) -> str:
    verdicts = {c.verdict for c in checks}
    return "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "pass"


def sanity_run(dataset: str, run: str, params: Params) -> tuple[Path, str]:
    """Write the verdicts of every rule; returns (path, overall verdict)."""
    record = read_json(paths.attack_result(dataset, run), what="attack result (run the attack stage first)")
    model, _, meta = load_for_dataset(dataset, run)
    device = resolve_device(params.device)
    model.to(device)
    x, y, subset = test_subset(dataset, params.sanity.n, device)
    torch.manual_seed(params.seed)
    ctx = Context(model=model, x=x, y=y, record=record, params=params, num_classes=meta["num_classes"])
    checks = []
    for number, name, fn in RULES:
        check = fn(ctx)
        check.id, check.name = number, name
        checks.append(check)
    verdict = overall(checks)
    out = paths.sanity_result(dataset, run)
    write_json(out, {
        "dataset": dataset,
        "run": run,
        "verdict": verdict,
        "n": len(y),
        "subset": subset,
        "seed": params.seed,
        "versions": library_versions(),
        "rules": [c.as_dict() for c in checks],
    })
    return out, verdict
