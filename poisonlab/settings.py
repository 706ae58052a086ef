"""Where poisonlab finds research data and keeps converted models: settings, never hard-coded paths.

- data directory: `--data-dir`, else `POISONLAB_DATA_DIR` (layout of the project's shared/data);
- cache directory: `POISONLAB_CACHE_DIR`, else `~/.cache/poisonlab`."""

from __future__ import annotations

import os
from pathlib import Path

from poisonlab.errors import ConfigError

_data_dir_override: Path | None = None


def set_data_dir(path: str | Path | None) -> None:
    global _data_dir_override
    _data_dir_override = Path(path) if path else None


def data_dir(required: bool = True) -> Path | None:
    path = _data_dir_override or (Path(os.environ["POISONLAB_DATA_DIR"])
                                  if os.environ.get("POISONLAB_DATA_DIR") else None)
    if path is None:
        if required:
            raise ConfigError("no data directory: pass --data-dir or set POISONLAB_DATA_DIR "
                              "(a folder with sst2/, imdb/, cr/, ...)")
        return None
    if not path.is_dir():
        if required:
            problem = "is a file, not a folder" if path.exists() else "does not exist"
            raise ConfigError(f"data directory {path} {problem}")
        return None
    return path


def cache_dir() -> Path:
    path = Path(os.environ.get("POISONLAB_CACHE_DIR") or Path.home() / ".cache" / "poisonlab")
    path.mkdir(parents=True, exist_ok=True)
    return path
