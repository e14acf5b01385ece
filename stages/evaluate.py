"""`otjr evaluate`: the attack suite, sanity checks and analyses on a model from elsewhere.

PATH is this pipeline's checkpoint, a safetensors state dict, or a PyTorch .pt / .pth state
dict (read with torch.load(weights_only=True) only), or give --robustbench NAME for a
RobustBench zoo model. Records are written as for a pipeline run, under --name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.core.errors import UserError

from ._cli import DATASET, one_line_errors, shown


def floats(text: Optional[str], key: str) -> Optional[list[float]]:
    """'0.49,0.48,0.45' -> [0.49, 0.48, 0.45]."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise UserError(f"{key}: expected comma-separated numbers, got {text!r}") from None


def json_object(text: Optional[str], key: str) -> Optional[dict]:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UserError(f"{key}: expected a JSON object such as '{{\"width\": 16}}', got {text!r}")
    return value


@one_line_errors
def evaluate(
    path: Optional[Path] = typer.Argument(None, help="checkpoint: .safetensors (ours or a state dict), .pt / .pth"),
    dataset: str = DATASET,
    arch: Optional[str] = typer.Option(None, help="architecture of a state dict: a model name (otjr list) or "
                                                  "timm/<architecture>; default params.yaml's model"),
    arch_args: Optional[str] = typer.Option(None, help="its arguments as JSON, e.g. '{\"width\": 16}'"),
    mean: Optional[str] = typer.Option(None, help="per-channel mean the model expects, e.g. 0.4914,0.4822,0.4465 "
                                                  "(default 0: the model takes [0, 1] images)"),
    std: Optional[str] = typer.Option(None, help="per-channel std, e.g. 0.2471,0.2435,0.2616 (default 1)"),
    robustbench: Optional[str] = typer.Option(None, help="a RobustBench zoo model instead of PATH, e.g. Wong2020Fast"),
    threat_model: str = typer.Option("Linf", help="RobustBench threat model: Linf, L2, corruptions"),
    model_dir: Optional[Path] = typer.Option(None, help="RobustBench's model_dir (default models/robustbench)"),
    name: Optional[str] = typer.Option(None, help="name of the records (default: the file's stem or zoo name)"),
) -> None:
    from pipeline import api

    out = api.evaluate(dataset, path, arch=arch, arch_args=json_object(arch_args, "--arch-args"),
                       mean=floats(mean, "--mean"), std=floats(std, "--std"), robustbench=robustbench,
                       threat_model=threat_model, model_dir=model_dir, name=name)
    if out is None:  # a torchrun rank other than 0: rank 0 writes and reports
        return
    record = json.loads(Path(out["attack"]).read_text())
    accuracies = ", ".join(f"{k} {record[k]['accuracy']:.1f}" for k in ["clean", *record["worst_case"]["attacks"],
                                                                         "worst_case"])
    print(f"evaluated {out['run']}@{dataset} (n = {record['n']}): {accuracies}")
    print(f"sanity: {out['verdict']} -> {shown(out['sanity'])}")
    print(f"records: {shown(out['attack'])}, {shown(out['analysis'])}")
