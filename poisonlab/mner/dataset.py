"""A data split ready for batching: tweets, their images (resized once, uint8) and gold boxes.

A data folder holds `train.txt`, `valid.txt` (or `dev.txt`) and `test.txt`; images and the box
JSONL are optional and named in the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from poisonlab.errors import DataError
from poisonlab.mner.boxes import BoxRecord, read_boxes
from poisonlab.mner.conll import Tweet, read_conll
from poisonlab.mner.images import load_image
from poisonlab.settings import data_dir

SPLIT_FILES = {"train": ("train.txt",), "valid": ("valid.txt", "dev.txt"), "test": ("test.txt",)}


@dataclass
class MnerSplit:
    tweets: list[Tweet]
    images: torch.Tensor | None                     # uint8 [T, 3, S, S]
    sizes: list[tuple[int, int] | None]             # original (w, h); None = placeholder / no image
    boxes: list[dict[str, BoxRecord]]               # per tweet: type -> record

    def __len__(self) -> int:
        return len(self.tweets)


def resolve_folder(folder: str) -> Path:
    """As given when it exists (absolute or relative to the working directory), else under the
    data directory (POISONLAB_DATA_DIR / --data-dir)."""
    path = Path(folder)
    if path.is_dir():
        return path
    if not path.is_absolute():
        root = data_dir(required=False)
        if root is not None and (root / path).is_dir():
            return root / path
    raise DataError(f"data folder '{folder}' not found (looked in the working directory and the "
                    "data directory)")


def split_file(folder: Path, split: str) -> Path:
    for name in SPLIT_FILES[split]:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no {' or '.join(SPLIT_FILES[split])} in {folder}")


def load_split(path: Path, images_folder: Path | None, boxes: dict[tuple[str, str], BoxRecord],
               image_size: int, indices: list[int] | None = None) -> MnerSplit:
    tweets = read_conll(path)
    if indices is not None:
        tweets = [tweets[i] for i in indices if i < len(tweets)]
    images, sizes = None, [None] * len(tweets)
    if images_folder is not None:
        loaded = [load_image(images_folder, t.img_id, image_size) for t in tweets]
        images = torch.stack([pixels for pixels, _ in loaded]) if loaded else None
        sizes = [size for _, size in loaded]
    by_image: dict[str, dict[str, BoxRecord]] = {}
    for (img_id, kind), record in boxes.items():
        by_image.setdefault(img_id, {})[kind] = record
    per_tweet = [by_image.get(t.img_id, {}) for t in tweets]
    return MnerSplit(tweets, images, sizes, per_tweet)


def optional_path(folder: Path, name: str | None) -> Path | None:
    if name is None:
        return None
    path = folder / name
    if not path.exists():
        raise DataError("not found", path=path)
    return path


def load_boxes(folder: Path, name: str | None) -> dict[tuple[str, str], BoxRecord]:
    path = optional_path(folder, name)
    return read_boxes(path) if path is not None else {}
