"""Weights from elsewhere: a safetensors or PyTorch state dict, unwrapped and fitted to an architecture.

Never unpickle: a PyTorch file is read with `torch.load(weights_only=True)` only, which builds
nothing but tensors and plain containers; a file that needs more (a pickled model object, a
custom class) is refused with one line and nothing in it runs. Common wrappers are unwrapped:
the state dict under `state_dict` / `model` / `model_state_dict` / `net`, and key prefixes
left by `nn.DataParallel` (`module.`), `torch.compile` (`_orig_mod.`) or a wrapper (`model.`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import UserError
from ..core.io import load_tensors

SAFETENSORS = (".safetensors",)
TORCH = (".pt", ".pth", ".bin", ".ckpt", ".tar")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.", "model.")
#: BatchNorm's step counter: absent from older checkpoints and unused at evaluation time
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, format) of a safetensors file or a PyTorch state dict, unwrapped; refuses pickled objects."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        return load_tensors(path, what="checkpoint")[0], "safetensors"
    if suffix in TORCH:
        return unwrap(torch_weights_only(path), path), "torch"
    raise UserError(f"{path}: unknown checkpoint format {suffix or '(no suffix)'!r}; "
                    f"expected {', '.join(SAFETENSORS + TORCH)}")


def first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


def refused(path: Path, err: BaseException) -> UserError:
    """The one line for a file `torch.load(weights_only=True)` will not read: it holds more than tensors."""
    return UserError(f"{path}: refused: loading it needs full unpickling, which could run code (only "
                     f"torch.load(weights_only=True) is used; save a state dict instead) [{first_line(err, 120)}]")


def torch_weights_only(path: Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused(path, err) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable PyTorch file ({first_line(err)})") from None


def is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside `obj`: itself, or under one of `WRAPPER_KEYS` (nested wrappers too)."""
    for _ in range(4):
        if is_state_dict(obj):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    found = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
    raise UserError(f"{path}: no state dict found (expected names -> tensors, optionally under "
                    f"{' / '.join(WRAPPER_KEYS)}; found {found})")


def strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes shared by every key while that matches `expected` better."""
    best = state
    while True:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in best)), None)
        if prefix is None:
            return best
        stripped = {k[len(prefix):]: v for k, v in best.items()}
        if len(expected & set(stripped)) < len(expected & set(best)):
            return best
        best = stripped


def listed(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, +{len(names) - limit} more" if len(names) > limit else shown


def fit(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load `state` into `module` exactly; missing, unexpected and mis-shaped keys are one line."""
    own = module.state_dict()
    state = strip_prefixes(state, set(own))
    missing = sorted(k for k in own if k not in state and not k.endswith(OPTIONAL_SUFFIXES))
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
                    for k in own if k in state and state[k].shape != own[k].shape)
    problems = [f"{label} {len(keys)} key(s): {listed(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch in", shapes))
                if keys]
    if problems:
        raise UserError(f"{path}: weights do not fit {what}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)
