"""Image splits as preprocess reads them, and the one resize rule every dataset shares.

A split is either already in memory (`TensorSplit`: uint8 images from the published
arrays) or a list of image files (`FileSplit`: each file's sha256 is checked as it is
read, so the bytes decoded are the bytes the download stage recorded). Both load any
subset of their images at a given square resolution: by default the shorter side is
resized to it (bilinear, antialiased) and the centre is cropped; the `stretch` rule
resizes the whole image to the square instead (torchvision's `Resize((s, s))`, the OTJR
authors' Intel loader). Images already at that size pass through untouched.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..core.errors import UserError

#: rule name -> what it does, as recorded in the prepared files' metadata
RESIZE_RULES = {
    "crop": "shorter side resized to the resolution (PIL bilinear, antialiased), then centre crop",
    "stretch": "whole image resized to resolution x resolution (PIL bilinear, antialiased; full JPEG decode)",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def threads() -> int:
    """Worker threads for file reading and decoding (PIL releases the GIL while decoding)."""
    return max(1, min(32, os.cpu_count() or 1))


def to_square(image: Image.Image, size: int, rule: str = "crop") -> Image.Image:
    """`size` x `size`: the shorter side resized to `size` and the centre cropped, or (`stretch`) the whole image."""
    w, h = image.size
    if (w, h) == (size, size):
        return image
    if rule == "stretch":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def decode_square(data: bytes, size: int, where: str, rule: str = "crop") -> np.ndarray:
    """An encoded image file as RGB uint8 (size, size, 3)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if rule == "crop":
                image.draft("RGB", (size, size))  # JPEG: decode at the smallest scale still >= size (fast)
            return np.asarray(to_square(image.convert("RGB"), size, rule))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"{where}: not a readable image ({err})") from None


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


@dataclass(frozen=True)
class TensorSplit:
    """Images already decoded: uint8 (N, C, H, W)."""

    images: torch.Tensor
    labels: torch.Tensor

    def native_size(self) -> int | None:
        h, w = self.images.shape[-2:]
        return int(h) if h == w else None

    def load(self, indices: torch.Tensor, size: int | None, rule: str = "crop") -> torch.Tensor:
        images = self.images[indices]
        if size is None or tuple(images.shape[-2:]) == (size, size):
            return images
        # (H, W) arrays become grey PIL images, (H, W, 3) arrays RGB ones
        out = [np.asarray(to_square(Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()), size, rule))
               for img in images]
        return torch.from_numpy(np.stack(out)).reshape(len(out), size, size, -1).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class FileSplit:
    """Image files with their labels and the sha256 each must have."""

    files: Sequence[Path]
    labels: torch.Tensor
    sha256: Sequence[str]

    def native_size(self) -> int | None:
        return None  # files vary in size: a resolution must be configured

    def _one(self, i: int, size: int, rule: str) -> np.ndarray:
        path = self.files[i]
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise UserError(f"{path}: cannot be read ({err.strerror}); run the download stage again") from None
        if hashlib.sha256(data).hexdigest() != self.sha256[i]:
            raise UserError(f"{path}: changed since the download stage recorded it (sha256 differs); run it again")
        return decode_square(data, size, str(path), rule)

    def load(self, indices: torch.Tensor, size: int | None, rule: str = "crop") -> torch.Tensor:
        if size is None:
            raise ValueError("FileSplit.load needs a resolution")
        with ThreadPoolExecutor(threads()) as pool:
            arrays = list(pool.map(lambda i: self._one(int(i), size, rule), indices.tolist()))
        if not arrays:
            return torch.empty(0, 3, size, size, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
