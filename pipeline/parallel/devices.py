"""The GPUs this machine lends to stages: `--gpus`, else $OTJR_GPUS (a stub for tests), else those CUDA sees."""

from __future__ import annotations

import os
import shutil
import subprocess

from pipeline.core.errors import UserError


def detect() -> list[str]:
    """GPU ids: $OTJR_GPUS (`0,1`; empty: none), else $CUDA_VISIBLE_DEVICES, else those `nvidia-smi` lists
    (without initialising CUDA or importing torch in this process)."""
    for var in ("OTJR_GPUS", "CUDA_VISIBLE_DEVICES"):
        if os.environ.get(var) is not None:
            return parse(os.environ[var])
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                            text=True, timeout=60)
    return listed.stdout.split() if listed.returncode == 0 else []


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
