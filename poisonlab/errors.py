"""One exception family for mistakes a user can fix; the CLI prints them as one line and exits 2.

Programming errors are left as ordinary exceptions (and tracebacks)."""

from __future__ import annotations

from pathlib import Path


class PoisonlabError(Exception):
    """A user error: bad input, bad config, missing file. The message says what would be valid."""


class ConfigError(PoisonlabError):
    """An invalid configuration value or an unknown key."""


class UnknownNameError(ConfigError):
    """A name that no registry knows."""


class DataError(PoisonlabError):
    """A malformed data file: names the file, the line and the field."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
        self.path, self.line, self.field = path, line, field


class UnsafeLoadError(PoisonlabError):
    """Refused to load something unsafe (pickle weights, remote code, archive path escape)."""
