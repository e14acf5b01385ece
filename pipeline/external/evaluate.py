"""`otjr evaluate`: the attack suite, sanity checks and analyses on a model from elsewhere.

The model is turned into a `Subject` (the same object the pipeline's own runs become) and
goes through the attack, sanity and analysis stages' own functions, so its records are the
ones a pipeline run gets: `metrics/attacks/<dataset>/<name>.json` with its flags,
`metrics/sanity/<dataset>/<name>.json`, and `metrics/analysis/<dataset>/<name>.json`.
Three ways in: this pipeline's checkpoint, a state dict (safetensors or PyTorch) with an
architecture name and normalisation, or a RobustBench zoo model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..analysis.run import analyze_subjects
from ..attacks.run import attack_subject
from ..train import distributed
from ..core import paths
from ..core.errors import UserError
from ..core.io import META_KEY
from ..data import load_meta
from ..methods import METHODS
from ..models import build, load_checkpoint, model_spec
from ..models.checkpoint import FORMAT
from ..models.subject import Subject, check_task
from ..params import Params
from ..sanity.run import sanity_subject
from .robustbench import load_zoo_model, weights_path
from .weights import first_line, fit, read_state_dict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*$")


@dataclass
class Source:
    """What to evaluate: a checkpoint file (with architecture and normalisation) or a RobustBench zoo model."""
    path: Path | None = None
    arch: str | None = None  # a registered model name or timm/<architecture>; default params.yaml's model
    arch_args: dict[str, Any] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    robustbench: str | None = None
    threat_model: str = "Linf"
    model_dir: Path | None = None


def check_name(name: str) -> str:
    """A run name for the records: plain characters, and not one the pipeline's own runs use."""
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"--name: {name!r} is not a usable name (letters, digits, '_', '.', '-')")
    if name.split("-")[0] in METHODS:
        raise UserError(f"--name: {name!r} would overwrite a pipeline run's records (method "
                        f"{name.split('-')[0]!r}); choose another name")
    return name


def default_name(source: Source) -> str:
    return source.robustbench if source.robustbench else Path(source.path).stem


def broadcast(values: list[float] | None, channels: int, key: str) -> list[float] | None:
    if values is None:
        return None
    if len(values) == 1:
        return list(values) * channels
    if len(values) != channels:
        raise UserError(f"{key}: {len(values)} values for a {channels}-channel dataset (give 1 or {channels})")
    return list(values)


def is_pipeline_checkpoint(path: Path) -> bool:
    """A safetensors file whose header carries this pipeline's checkpoint metadata (tensors not read)."""
    if path.suffix.lower() != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
        return json.loads(header.get(META_KEY, "{}")).get("format") == FORMAT
    except (SafetensorError, OSError, ValueError, AttributeError):
        return False  # not ours: read_state_dict gives the one-line error if it is unreadable


def refuse_architecture_flags(source: Source, why: str) -> None:
    """--arch / --arch-args / --mean / --std where the model brings its own: one line naming them."""
    given = [flag for flag, v in (("--arch", source.arch), ("--arch-args", source.arch_args), ("--mean", source.mean),
                                  ("--std", source.std)) if v]
    if given:
        raise UserError(f"{why}; drop {', '.join(given)}")


def pipeline_checkpoint(path: Path, dataset: str, meta: dict, source: Source) -> tuple[Any, dict, dict]:
    """(model, info, origin) of a checkpoint this pipeline wrote: it names its own architecture."""
    refuse_architecture_flags(source, f"{path}: a checkpoint of this pipeline names its architecture and normalisation")
    model = load_checkpoint(path)
    check_task(path, model.checkpoint_info, dataset, meta)
    return model, model.checkpoint_info, {"source": "checkpoint", "format": "otjr-checkpoint"}


def state_dict_model(path: Path, meta: dict, source: Source, params: Params) -> tuple[Any, dict, dict]:
    """(model, info, origin) of foreign weights loaded into a registered or timm architecture."""
    name = source.arch or params.model.name
    args = source.arch_args if source.arch_args is not None else (params.model.args if not source.arch else {})
    channels = meta["shape"][0]
    mean = broadcast(source.mean, channels, "--mean") or [0.0] * channels
    std = broadcast(source.std, channels, "--std") or [1.0] * channels
    if any(s <= 0 for s in std):
        raise UserError(f"--std: every value must be > 0, got {std}")
    state, fmt = read_state_dict(path)
    spec = model_spec(name, args, meta["num_classes"], channels, mean, std)
    model = build(spec)
    whole = any(k.endswith("normalize.mean") for k in state)  # a state dict of our Classifier, normalisation included
    if whole and (source.mean or source.std):
        raise UserError(f"{path}: the weights carry their own normalisation (normalize.mean / normalize.std); "
                        f"drop --mean / --std")
    fit(model if whole else model.net, state, path, f"{name} {args or ''}".strip())
    if whole:
        spec = model_spec(name, args, meta["num_classes"], channels, model.normalize.mean.flatten().tolist(),
                          model.normalize.std.flatten().tolist())
    info = {"model": spec, "settings": {"model": {"name": name, "args": dict(args)}}}
    return model.eval(), info, {"source": "state_dict", "format": fmt, "architecture": spec}


def robustbench_model(dataset: str, meta: dict, source: Source) -> tuple[Any, dict, dict]:
    """(model, info, origin) of a RobustBench zoo model, built by the zoo's own constructor."""
    refuse_architecture_flags(source, "--robustbench: the zoo's constructor sets architecture and normalisation")
    model_dir = Path(source.model_dir) if source.model_dir else paths.root() / "models" / "robustbench"
    model = load_zoo_model(source.robustbench, dataset, source.threat_model, model_dir)
    arch = f"robustbench/{source.robustbench}"
    info = {"model": {"name": arch, "args": {}, "num_classes": meta["num_classes"]},
            "settings": {"model": {"name": arch, "args": {}}}}
    origin = {"source": "robustbench", "model": source.robustbench, "dataset": dataset,
              "threat_model": source.threat_model,
              "weights": str(weights_path(model_dir, source.robustbench, dataset, source.threat_model))}
    return model, info, origin


def external_subject(dataset: str, source: Source, params: Params, name: str | None = None) -> Subject:
    """The model described by `source` as a `Subject` for `dataset`; every check happens here, before any work."""
    if source.robustbench and source.path is not None:
        raise UserError("give either a checkpoint PATH or --robustbench NAME, not both")
    if not source.robustbench and source.path is None:
        raise UserError("give a checkpoint PATH (or --robustbench NAME)")
    run = check_name(name or default_name(source))
    meta = load_meta(dataset)
    if source.robustbench:
        model, info, origin = robustbench_model(dataset, meta, source)
        checkpoint = origin["weights"]
    else:
        path = Path(source.path)
        if not path.is_file():
            raise UserError(f"{path}: checkpoint not found")
        loader = pipeline_checkpoint if is_pipeline_checkpoint(path) else None
        model, info, origin = (loader(path, dataset, meta, source) if loader
                               else state_dict_model(path, meta, source, params))
        checkpoint = str(path)
    try:
        with torch.no_grad():
            classes = model.float().eval()(torch.rand(1, *meta["shape"])).shape[-1]
    except RuntimeError as err:
        raise UserError(f"{checkpoint}: the model cannot take {dataset} images {meta['shape']} ({first_line(err)})") from None
    if classes != meta["num_classes"]:
        raise UserError(f"{checkpoint}: model outputs {classes} classes but dataset {dataset} has {meta['num_classes']}")
    return Subject(dataset, run, model.eval(), info, meta, checkpoint, origin)


def evaluate_external(dataset: str, source: Source, params: Params, name: str | None = None,
                      show_progress: bool | None = None) -> dict[str, Any] | None:
    """Attack, sanity-check and analyse a model from elsewhere; returns the written paths and the verdict.

    Under torchrun the attack suite is spread over the ranks; rank 0 alone then runs the sanity checks and
    the analyses (single-process, as in the pipeline's stages) and the others return None.
    """
    subject = external_subject(dataset, source, params, name)
    attack = attack_subject(subject, params, show_progress)
    if not distributed.from_environment().main:
        return None
    sanity, verdict = sanity_subject(subject, params)
    analysis = analyze_subjects([subject], params, paths.external_analysis(dataset, subject.run), show_progress)
    return {"run": subject.run, "attack": attack, "sanity": sanity, "verdict": verdict, "analysis": analysis}
