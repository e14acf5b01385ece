"""The GPUs this machine lends to stages: `--gpus`, else $OTJR_GPUS (a stub for tests), else what CUDA sees."""

from __future__ import annotations

import os

from pipeline.core.errors import UserError


def detect() -> list[str]:
    """GPU ids: $OTJR_GPUS (`0,1`; empty: none), else $CUDA_VISIBLE_DEVICES's or torch's count of them."""
    stub = os.environ.get("OTJR_GPUS")
    if stub is not None:
        return parse(stub)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = parse(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    return visible[:count] if visible else [str(i) for i in range(count)]


def parse(text: str) -> list[str]:
    ids = [g.strip() for g in text.split(",") if g.strip()]
    if len(set(ids)) != len(ids):
        raise UserError(f"--gpus {text}: a GPU is named twice")
    return ids


class Pool:
    """GPUs not in use; a stage takes its own and gives them back."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.free = list(ids)

    def take(self, n: int) -> list[str] | None:
        if n > len(self.free):
            return None
        taken, self.free = self.free[:n], self.free[n:]
        return taken

    def give(self, ids: list[str]) -> None:
        self.free.extend(ids)
