"""Fingerprints of the files a data set was read from, so a run folder says which bytes it saw:
a data directory edited after the run (or another copy of it) shows up as a different hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

# what a data folder's split files end with (a folder may also hold READMEs and sub-folders)
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".gz")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprints(source: str) -> dict[str, str]:
    """{file: sha256} of a data set's source: the file itself, or the data files directly in
    the folder. A Hub or in-memory source has no local files: {}."""
    path = Path(source) if source and not source.startswith("hub:") else None
    if path is None or not path.exists():
        return {}
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    return {str(p): file_sha256(p) for p in files}
