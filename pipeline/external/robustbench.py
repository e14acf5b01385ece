"""RobustBench's model zoo through the `robustbench` package (optional extra: `pip install -e '.[robustbench]'`).

The zoo's own loader builds the model with the zoo's constructor and reads its weights from
`<model_dir>/<dataset>/<threat model>/<name>.pt`, downloading them first (as RobustBench
does) when the file is not there; with the file in place no network is needed. Its
`torch.load` calls are forced to `weights_only=True` here: nothing is unpickled.

robustbench 1.1.1 (PyPI) imports, in its top-level `__init__`, its AutoAttack evaluation
(`autoattack`, a package published on GitHub only) and `pkg_resources` (gone from
setuptools >= 81). The zoo and its loader need neither, so when that import fails we load
the package's modules without running its `__init__`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import pickle
import sys
import types
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..core.errors import UserError
from .weights import first_line, refused

EXTRA = "pip install -e '.[robustbench]'"
DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions")


def import_robustbench() -> types.ModuleType:
    """`robustbench.utils`, or one line naming the extra to install."""
    try:
        return importlib.import_module("robustbench.utils")
    except ModuleNotFoundError as err:
        if err.name == "robustbench" or importlib.util.find_spec("robustbench") is None:
            raise UserError(f"--robustbench needs the robustbench extra: {EXTRA}") from None
        if err.name not in ("autoattack", "pkg_resources"):
            raise UserError(f"--robustbench: the robustbench package cannot be imported (no module {err.name!r}); "
                            f"reinstall the extra: {EXTRA}") from None
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        del sys.modules[name]  # half-imported by the failed attempt
    spec = importlib.util.find_spec("robustbench")
    package = types.ModuleType("robustbench")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["robustbench"] = package
    return importlib.import_module("robustbench.utils")


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Within the block every `torch.load` is `weights_only=True`, whatever its caller asks."""
    original = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def zoo_entry(rb, name: str, dataset: str, threat_model: str) -> dict:
    """The zoo's entry for (dataset, threat model, name); unknown values are one line listing the choices."""
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel  # an optional package, imported on use

    if dataset not in DATASETS:
        raise UserError(f"--dataset: RobustBench's zoo has {', '.join(DATASETS)} models, not {dataset!r}")
    if threat_model not in THREAT_MODELS:
        raise UserError(f"--threat-model: expected one of {', '.join(THREAT_MODELS)}, got {threat_model!r}")
    models = rb.all_models[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    if name not in models:
        raise UserError(f"--robustbench: no {dataset} {threat_model} model {name!r} in RobustBench's zoo "
                        f"(e.g. {', '.join(list(models)[:5])}; {len(models)} in all)")
    return models[name]


def weights_path(model_dir: Path, name: str, dataset: str, threat_model: str) -> Path:
    """Where RobustBench's loader reads (and downloads) the weights."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def load_zoo_model(name: str, dataset: str, threat_model: str, model_dir: Path) -> nn.Module:
    """`robustbench.utils.load_model` with every `torch.load` weights-only; errors are one line."""
    rb = import_robustbench()
    zoo_entry(rb, name, dataset, threat_model)
    path = weights_path(model_dir, name, dataset, threat_model)
    try:
        with weights_only_loads():
            model = rb.load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    except Exception as err:  # the zoo raises whatever its download, unpickler or state dict raises
        first = first_line(err, 200)
        if isinstance(err, pickle.UnpicklingError):
            raise refused(path, err) from None
        if not path.is_file():
            raise UserError(f"{path}: weights not found and RobustBench's download failed ({first}); "
                            f"put the file there (model_dir/<dataset>/<threat model>/<name>.pt)") from None
        raise UserError(f"{path}: RobustBench could not load {name} ({type(err).__name__}: {first})") from None
    return model.eval()
