"""ImageNet weights as a model's start, read without unpickling.

An architecture whose tensor names follow torchvision's (`resnet50`) may start from one
of torchvision's weight files: fetched through torch.hub into its cache ($TORCH_HOME)
and checked against the sha256 prefix in torchvision's file name, or read from a local
copy named in `model.pretrained.file` and checked against `model.pretrained.sha256`.
The file is read with `torch.load(weights_only=True)` (tensors and plain containers only)
after its hash matched. Every tensor is copied but the classifier head, which keeps its
fresh init with one output per class of the dataset; a tensor missing or of another
shape (e.g. the 3x3 stem where the weights have ImageNet's 7x7) is refused by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import UserError

#: our architecture -> (torchvision's weights enum, prefix of the head's tensors)
TORCHVISION: dict[str, tuple[str, str]] = {"resnet50": ("ResNet50_Weights", "fc.")}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torchvision_entry(arch: str, weights: str):
    if arch not in TORCHVISION:
        raise UserError(f"model.pretrained: no ImageNet weights for model {arch!r}; available for: "
                        f"{', '.join(sorted(TORCHVISION))}")
    import torchvision.models  # torchvision costs ~1.6 s of start-up: only pretrained starts need it

    enum = getattr(torchvision.models, TORCHVISION[arch][0])
    if weights not in enum.__members__:
        raise UserError(f"model.pretrained.weights: {weights!r} is not one of torchvision's {enum.__name__}: "
                        f"{', '.join(enum.__members__)}")
    return enum[weights]


def torchvision_file(arch: str, weights: str) -> Path:
    """torchvision's weight file in the torch.hub cache, downloaded (hash-checked) if absent."""
    url = _torchvision_entry(arch, weights).url
    name = url.rsplit("/", 1)[-1]
    prefix = torch.hub.HASH_REGEX.search(name).group(1)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
        except RuntimeError as err:  # torch.hub's hash mismatch
            raise UserError(f"{url}: download does not match its sha256 prefix {prefix} ({err})") from None
        except OSError as err:
            raise UserError(f"{url}: cannot download ({err}); download it yourself and set model.pretrained.file "
                            "and model.pretrained.sha256") from None
    got = _sha256(path)
    if not got.startswith(prefix):
        raise UserError(f"{path}: sha256 {got[:12]}... does not start with {prefix} as torchvision's file name says; "
                        "delete the file and run again")
    return path


def read_weights(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """A state dict from a weights file whose sha256 must be `sha256` (checked before reading)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.pretrained.file: {path} not found")
    got = _sha256(path)
    if got != sha256:
        raise UserError(f"{path}: sha256 {got} does not match model.pretrained.sha256 {sha256}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (weights_only refuses anything but tensors, with varied errors)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a plain tensor state dict ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a mapping of tensor names to tensors")
    return state


def transfer(net: nn.Module, state: dict[str, torch.Tensor], head: str, where: Any) -> int:
    """Copy every tensor of `state` into `net` but those under `head`; returns how many were copied."""
    own = net.state_dict()
    theirs = {k: v for k, v in state.items() if not k.startswith(head)}
    for key, value in own.items():
        if key.startswith(head) or (key.endswith("num_batches_tracked") and key not in theirs):
            continue
        if key not in theirs:
            raise UserError(f"{where}: has no tensor {key!r} of this model (model.name / model.args differ from "
                            "the architecture the weights were trained for)")
        if tuple(theirs[key].shape) != tuple(value.shape):
            raise UserError(f"{where}: tensor {key!r} has shape {tuple(theirs[key].shape)}, the model's "
                            f"{tuple(value.shape)} (ImageNet weights need model.args.imagenet_stem: true and the "
                            "architecture's full size)")
    unexpected = sorted(set(theirs) - set(own))
    if unexpected:
        raise UserError(f"{where}: tensor {unexpected[0]!r} has no place in this model")
    with torch.no_grad():
        for key, value in theirs.items():
            own[key].copy_(value)
    return len(theirs)


def load_pretrained(model: nn.Module, arch: str, params) -> nn.Module:
    """Load `params` (model.pretrained) into `model` (a Classifier) in place, the head excepted."""
    if params.file is not None:
        path, sha256 = Path(params.file).expanduser(), params.sha256
        _torchvision_entry(arch, params.weights)  # the architecture and weights name must exist all the same
    else:
        path = torchvision_file(arch, params.weights)
        sha256 = _sha256(path)
    transfer(model.net, read_weights(path, sha256), TORCHVISION[arch][1], path)
    return model
