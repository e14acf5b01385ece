"""Resume state: everything needed to continue a run bit-for-bit after the last finished epoch.

Weights, optimizer buffers, RNG states and the logged history go into one safetensors
file (no pickle). A fingerprint of the run's settings guards against resuming a run
whose params or data changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..core.errors import UserError
from ..core.io import load_tensors, save_tensors

FORMAT = "otjr-resume-2"  # 2: torch.optim.SGD's param_groups (a 1 from the former SGD copy lacks its keys: not resumed)


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ResumeState:
    epoch: int  # epochs finished
    history: list[dict[str, float]]


def save_state(
    path: Path,
    *,
    fingerprint: str,
    epoch: int,
    history: list[dict[str, float]],
    modules: dict[str, nn.Module],
    optimizers: dict,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the state; `extra` tensors (e.g. every training process's RNG states and buffers) are stored as named."""
    tensors: dict[str, torch.Tensor] = dict(extra or {})
    meta: dict[str, Any] = {"optimizers": {}}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"module.{name}.{k}"] = v
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{name}.{idx}.{k}"] = v
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        meta["optimizers"][name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_tensors(
        path,
        tensors,
        # records as [key, value] pairs: the header's JSON is key-sorted, and the logs a resume rebuilds
        # from them must list the metrics in the order an unbroken run logged them
        {"format": FORMAT, "fingerprint": fingerprint, "epoch": epoch,
         "history": [[[k, v] for k, v in r.items()] for r in history], "meta": meta},
    )


def load_state(
    path: Path,
    *,
    fingerprint: str,
    modules: dict[str, nn.Module],
    optimizers: dict,
    restore_extra: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> ResumeState | None:
    """Restore modules, optimizers and RNGs from `path`; None if absent or from other settings.

    `restore_extra`, if given, is called last with all stored tensors (a training process
    restores its own RNG states and buffers from the `extra` entries).
    """
    if not path.is_file():
        return None
    try:
        tensors, metadata = load_tensors(path, what="resume state")
    except UserError:
        return None  # a torn or foreign file is not worth resuming from
    if metadata.get("format") != FORMAT or metadata.get("fingerprint") != fingerprint:
        return None
    meta = metadata["meta"]
    for name, module in modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        info = meta["optimizers"][name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, v in tensors.items():
            if key.startswith(prefix):
                idx, k = key[len(prefix):].split(".", 1)
                state.setdefault(int(idx), {})[k] = v
        for idx, scalars in info["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if restore_extra is not None:
        restore_extra(tensors)
    history = [dict(r) if isinstance(r, list) else r for r in metadata["history"]]
    return ResumeState(epoch=int(metadata["epoch"]), history=history)
