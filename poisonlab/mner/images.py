"""Tweet images by id, resized to a square tensor; a missing or unreadable image becomes a grey
placeholder and a warning (real MNER sets have many dead image links, so it must not stop a run)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from poisonlab.mner.devices import HOST

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


class ImageWarning(UserWarning):
    """An image could not be used; a placeholder stands in for it."""


def find_image(folder: Path, img_id: str) -> Path | None:
    direct = folder / img_id
    if direct.suffix.lower() in EXTENSIONS and direct.is_file():
        return direct
    for ext in EXTENSIONS:
        candidate = folder / f"{img_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def placeholder(size: int) -> torch.Tensor:
    return torch.full((3, size, size), 128, dtype=torch.uint8, device=HOST)


def load_image(folder: str | Path, img_id: str, size: int) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """(uint8 [3, size, size], original (width, height)); the size is None for a placeholder."""
    from PIL import Image, UnidentifiedImageError

    path = find_image(Path(folder), img_id)
    if path is None:
        warnings.warn(f"image {img_id} not found in {folder}; using a placeholder", ImageWarning,
                      stacklevel=2)
        return placeholder(size), None
    try:
        with Image.open(path) as image:
            original = image.size
            pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        warnings.warn(f"image {path} is unreadable ({exc}); using a placeholder", ImageWarning,
                      stacklevel=2)
        return placeholder(size), None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), original


def normalise(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 - 0.5
