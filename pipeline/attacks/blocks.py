"""Fixed blocks of the evaluated images: the unit of randomness, of sharding over ranks and of resuming.

An attack's images (the first n of the test subset) are cut into blocks of `attack.block`
images. Block i of every attack is attacked with the global RNG seeded from (seed, i), so a result
depends neither on the batch size, nor on which process attacks which block, nor on a run
having been killed and restarted between blocks. Ranks take whole blocks (block i goes to
rank i mod ranks); each finished block is one small safetensors file under .otjr/ (`Store`),
and the blocks travel between ranks in the same encoding (`pack`, `unpack`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from ..core.errors import UserError
from ..core.io import load_tensors, save_tensors
from ..train.distributed import Ranks, all_gather
from .counting import Passes

#: `unpack`'s key for the JSON that is not a tensor (passes, seconds, validity).
_META = "meta"


@dataclass
class BlockResult:
    """One block's outcome: a flag per image (clean: correct; attack: robust), and what it cost."""

    flags: torch.Tensor  # bool, one per image of the block
    passes: Passes = field(default_factory=Passes)
    seconds: float = 0.0
    validity: dict[str, float] = field(default_factory=dict)  # attacks only (pipeline/attacks/evaluate.py)
    gathered: dict[str, torch.Tensor] = field(default_factory=dict)  # the attack's `gathered()` for this block

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        meta = {"forward": self.passes.forward, "backward": self.passes.backward, "seconds": self.seconds,
                "validity": self.validity}
        out = {f"{prefix}flags": self.flags.cpu(),
               f"{prefix}{_META}": torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)}
        out.update({f"{prefix}gathered.{k}": v.cpu() for k, v in self.gathered.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> "BlockResult":
        meta = json.loads(bytes(tensors[f"{prefix}{_META}"].tolist()).decode())
        start = f"{prefix}gathered."
        gathered = {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}
        return cls(tensors[f"{prefix}flags"].bool(), Passes(meta["forward"], meta["backward"]), meta["seconds"],
                   meta["validity"], gathered)


def spans(n: int, size: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each block of the first `n` images; `size` None: one block of all of them."""
    size = size or max(n, 1)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def owned(count: int, rank: int, ranks: int) -> list[int]:
    """The blocks a rank attacks: every `ranks`-th from its own index."""
    return list(range(rank, count, ranks))


def block_seed(seed: int, index: int) -> int:
    """The RNG seed of block `index` (64 bits of a hash: no two blocks share a stream). Every attack starts block i
    from the same state, as one seed per attack did before blocks: PGD-100 then takes PGD-20's first 20 iterates
    and fools a superset of its images (sanity rule 4 compares the two)."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def pack(results: dict[tuple[str, int], BlockResult]) -> bytes:
    """Blocks as safetensors bytes (no pickle), e.g. to send to another rank."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for (name, index), result in results.items():
        tensors.update(result.tensors(f"{name}/{index}/"))
    return save(tensors)


def unpack(data: bytes) -> dict[tuple[str, int], BlockResult]:
    from safetensors.torch import load

    tensors = load(data)
    keys = {k.rsplit("/", 1)[0] for k in tensors if k.endswith(f"/{_META}")}
    out = {}
    for key in keys:
        name, index = key.rsplit("/", 1)
        out[(name, int(index))] = BlockResult.from_tensors(tensors, f"{key}/")
    return out


class RankFailed(UserError):
    """Another process of a torchrun job died or stopped answering before its blocks were in (not bad input)."""

    exit_code = 1


class Store:
    """Finished blocks of one evaluation on disk (a folder keyed by everything its results depend on), or nowhere."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    def _path(self, name: str, index: int) -> Path:
        return self.folder / f"{name}.{index}.safetensors"

    def load(self, name: str, index: int) -> BlockResult | None:
        if self.folder is None or not self._path(name, index).is_file():
            return None
        tensors, _ = load_tensors(self._path(name, index), what="attack progress")
        return BlockResult.from_tensors(tensors)

    def save(self, name: str, index: int, result: BlockResult) -> None:
        if self.folder is not None:
            save_tensors(self._path(name, index), result.tensors())

    def discard_others(self) -> None:
        """Remove the partial results of this (dataset, run) kept under any other key."""
        if self.folder is not None and self.folder.parent.is_dir():
            for other in self.folder.parent.iterdir():
                if other != self.folder:
                    shutil.rmtree(other, ignore_errors=True)

    def finish(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder.parent, ignore_errors=True)


def evaluation_key(parts: Iterable[Any], tensors: Iterable[torch.Tensor]) -> str:
    """A digest of JSON-able `parts` and the bytes of `tensors` (model weights, images, labels)."""
    h = hashlib.sha256(json.dumps(list(parts), sort_keys=True, default=str).encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def gather_bytes(data: bytes, ranks: Ranks, device: torch.device) -> list[bytes]:
    """Every rank's bytes (of any length), in rank order, on every rank: the lengths, then the bytes padded to
    the longest, through the trainer's `all_gather` (NCCL: on `device`)."""
    if not ranks.distributed:
        return [data]
    sizes = [int(n) for n in all_gather(torch.tensor([len(data)], dtype=torch.int64, device="cpu"), ranks, device)]
    local = torch.zeros(max(sizes), dtype=torch.uint8, device="cpu")
    if data:
        local[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return [p[:n].numpy().tobytes() for p, n in zip(all_gather(local, ranks, device), sizes)]


def gather_blocks(data: bytes, ranks: Ranks, device: torch.device) -> dict[tuple[str, int], BlockResult] | None:
    """Every rank's packed blocks, on rank 0 (None on the others). A rank that died fails this with one line."""
    try:
        parts = gather_bytes(data, ranks, device)
    except RuntimeError as err:  # gloo / NCCL: a peer closed the connection or timed out
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise RankFailed(f"attack: another of the {ranks.size} ranks failed before sending its blocks ({reason}); "
                         "the record is unchanged, re-run to continue from the finished blocks") from None
    if not ranks.main:
        return None
    out: dict[tuple[str, int], BlockResult] = {}
    for part in parts:
        out.update(unpack(part))
    return out
