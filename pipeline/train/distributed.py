"""Training on several processes with DistributedDataParallel (`torchrun ... -m pipeline stage train`).

torchrun starts one process per GPU (or CPU worker) with RANK, WORLD_SIZE and LOCAL_RANK
set; without them training is one process and everything here is a no-op. Each process
takes its contiguous shard of every global batch (`train.batch_size` stays the global
batch, so the LR and the science settings do not change with the number of processes),
attacks its own shard, and DDP averages the weight gradients, so every process applies
the same update. Per-sample losses then match one process on the same global batches;
batch-coupled terms (batch-norm statistics, SW and Sinkhorn pairings over the batch) are
computed per shard, as with any data-parallel training, unless `speed.sync_batchnorm`
(CUDA) normalises over the global batch. Rank 0 writes the checkpoint, the resume state
(with every rank's RNG states and buffers) and the logs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..core.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of `n` (n divisible by `size`)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


SINGLE = Ranks()


def from_environment() -> Ranks:
    """The ranks torchrun (or any launcher following its convention) put in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return Ranks(rank=int(os.environ["RANK"]), size=size, local=int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs); returns this rank's device."""
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _import_group_defaults()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.size)
    return device


def _import_group_defaults() -> None:
    """Import torch.distributed.nn before the group exists (DDP imports it later otherwise).

    Its functions take `group=group.WORLD` as a default argument: bound after init, that
    default holds the group, and its gloo threads, past `destroy_process_group` until the
    interpreter exits, where tearing them down can abort a rank ("terminate called without
    an active exception") and fail the whole torchrun job.
    """
    import torch.distributed.nn.functional  # noqa: F401


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def stop(ranks: Ranks) -> None:
    if ranks.distributed:
        if dist.is_initialized():
            dist.destroy_process_group()


def seed_rank(seed: int, ranks: Ranks) -> None:
    """Give every rank but 0 its own random stream (attack starts, augmentations) once the model is built."""
    if ranks.rank > 0:
        torch.manual_seed(seed * 1_000_003 + ranks.rank)


def check_batch_size(batch_size: int, ranks: Ranks, sync_batchnorm: bool, device: torch.device) -> None:
    if batch_size % ranks.size:
        raise UserError(f"train.batch_size: {batch_size} does not split evenly over {ranks.size} training processes")
    if ranks.distributed and sync_batchnorm and device.type != "cuda":
        raise UserError("speed.sync_batchnorm: needs CUDA devices (torch's SyncBatchNorm has no CPU kernel)")


def convert_batchnorm(model: nn.Module, ranks: Ranks, sync_batchnorm: bool) -> nn.Module:
    """SyncBatchNorm in place of BatchNorm when asked and distributed (same parameters and state keys)."""
    if ranks.distributed and sync_batchnorm:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The model whose backward all-reduces the gradients (the model itself in one process)."""
    if not ranks.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_ranks(tensors: Sequence[torch.Tensor], ranks: Ranks) -> list[torch.Tensor]:
    """Each tensor averaged over the ranks (one all-reduce for all of them); the tensors as they are in one process."""
    tensors = list(tensors)
    if not ranks.distributed or not tensors:
        return tensors
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= ranks.size
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out


def average_gradients(modules: Sequence[nn.Module], ranks: Ranks) -> None:
    """Average the .grad of modules that DDP does not wrap (e.g. LBGAT's teacher) over the ranks."""
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    for g, mean in zip(grads, mean_over_ranks(grads, ranks)):
        g.copy_(mean)


def all_gather(tensor: torch.Tensor, ranks: Ranks, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor, on the CPU, in rank order."""
    if not ranks.distributed:
        return [tensor.cpu()]
    where = _collective_device(device)
    local = tensor.to(where)
    parts = [torch.empty_like(local) for _ in range(ranks.size)]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def _own_states(modules: dict[str, nn.Module], device: torch.device) -> dict[str, torch.Tensor]:
    """This process's RNG states and module buffers, named as in the resume state (less the rank)."""
    states = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    for name, module in modules.items():
        for key, buffer in module.named_buffers():
            states[f"buffer.{name}.{key}"] = buffer.detach()
    return states


def rank_states(modules: dict[str, nn.Module], ranks: Ranks, device: torch.device) -> dict[str, torch.Tensor]:
    """Every rank's RNG states and module buffers, as `rank.<r>.<name>` for the resume state.

    The resume state's own entries are rank 0's. The other ranks' RNGs differ (`seed_rank`),
    and so do their buffers: DDP hands every rank rank 0's batch-norm statistics at each
    forward, each rank then moves them on its own shard, and the next batch's attack (eval
    mode, this process's model) normalises with them.
    """
    if not ranks.distributed:
        return {}
    out = {}
    for name, state in _own_states(modules, device).items():
        for rank, s in enumerate(all_gather(state, ranks, device)):
            out[f"rank.{rank}.{name}"] = s
    return out


def restore_rank(tensors: dict[str, torch.Tensor], modules: dict[str, nn.Module], ranks: Ranks,
                 device: torch.device) -> None:
    """Give this rank back its own RNG states and buffers from `rank_states` (the modules hold rank 0's)."""
    if not ranks.distributed:
        return
    prefix = f"rank.{ranks.rank}."
    if f"{prefix}rng.cpu" not in tensors:
        raise UserError(f"the resume state holds no state of training process {ranks.rank} (written by older code); "
                        "rerun with --no-resume")
    torch.set_rng_state(tensors[f"{prefix}rng.cpu"])
    if device.type == "cuda" and f"{prefix}rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors[f"{prefix}rng.cuda"], device)
    with torch.no_grad():
        for name, module in modules.items():
            for key, buffer in module.named_buffers():
                buffer.copy_(tensors[f"{prefix}buffer.{name}.{key}"])


def same_everywhere(value: int, ranks: Ranks, device: torch.device) -> bool:
    """Whether every rank holds the same integer."""
    values = all_gather(torch.tensor([value], dtype=torch.int64, device="cpu"), ranks, device)
    return all(int(v) == value for v in values)


def weights_digest(model: nn.Module) -> int:
    """A 63-bit digest of the parameters' bytes (buffers excluded: BN statistics are per rank)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "big") >> 1
