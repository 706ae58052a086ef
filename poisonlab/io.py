"""Atomic file writes: a reader never sees a half-written file, a kill never destroys the old one.

Written files get the mode a plain `open()` would give (the user's umask), and JSON is strict
(no bare NaN/Infinity), so other tools can read and share what poisonlab writes."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


def _current_umask() -> int:
    """The process umask. It can only be read by setting it: set a strict one for that instant
    (a file another thread creates meanwhile is too private, never too open), then restore."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> Path:
    """Give `path` the mode `open()` or `mkdir()` would have given it under the user's umask
    (0o666 or 0o777 less the umask): tempfile's mkstemp/mkdtemp create 0o600/0o700, which would
    otherwise survive the rename and hide results from the user's group."""
    path = Path(path)
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~_current_umask())
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename tmp_path onto `path` (with the umask's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A folder built aside (beside `path`) and renamed onto `path` when the block ends, every
    entry with the umask's mode; removed if the block fails, so `path` is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial",
                                     dir=path.parent))
    try:
        yield building
        for entry in [building, *building.rglob("*")]:  # some writers create 0600 files
            apply_umask(entry)
        os.replace(building, path)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-inf, numpy's too) as None and numpy numbers
    as Python ones, through dicts, lists and tuples: strict JSON readers reject bare NaN."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON: non-finite numbers are written as null (see `json_safe`)."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, default=str, allow_nan=False)
    return write_text(path, text + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file; a bad line is a DataError
    naming the file and line. A UTF-8 byte-order mark (Windows editors write one) is skipped."""
    from poisonlab.errors import DataError
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", path=path) from None
    with handle:
        try:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON ({exc.msg})", path=path, line=line) from None
                if not isinstance(row, dict):
                    raise DataError("a row must be a JSON object", path=path, line=line)
                yield line, row
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", path=path) from None
