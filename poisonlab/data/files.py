"""Read labelled examples from local JSONL / CSV / TSV files, with one clear error per bad row."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

from poisonlab.data.example import Example
from poisonlab.errors import DataError
from poisonlab.io import jsonl_rows

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
# A classification head has one row per label; a label id far beyond any real task is a data
# mistake (an id column read as the label), and building its head would exhaust memory.
MAX_LABELS = 10_000
# ASCII only: str.isdigit() also accepts "²" or "٣", which int() rejects or reads as another number
_INTEGER = re.compile(r"-?[0-9]+")


def _label(value: object, path: Path, line: int, field: str) -> int:
    if value is None or value == "":
        raise DataError("missing label", path=path, line=line, field=field)
    if isinstance(value, bool):
        raise DataError(f"label must be an integer, got {value!r}", path=path, line=line,
                        field=field)
    if isinstance(value, int):
        label = value
    elif isinstance(value, float) and value.is_integer():
        label = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        digits = value.strip()
        # int() refuses more than ~4300 digits; any such label is far above the cap anyway
        label = int(digits) if len(digits.lstrip("-0")) <= 20 else MAX_LABELS
    else:
        raise DataError(f"label must be an integer written with digits 0-9, got {value!r}",
                        path=path, line=line, field=field)
    if label < 0:
        raise DataError(f"label must be >= 0, got {label}", path=path, line=line, field=field)
    if label >= MAX_LABELS:
        shown = value if len(str(value)) <= 20 else f"{str(value)[:20]}..."
        raise DataError(f"label {shown} is too large: at most {MAX_LABELS} classes are supported "
                        f"(labels 0..{MAX_LABELS - 1})", path=path, line=line, field=field)
    return label


def _example(row: dict, path: Path, line: int, text_field: str, label_field: str) -> Example:
    """One validated example (empty text is an error; callers may choose to skip it)."""
    if text_field not in row:
        raise DataError(f"missing text column (columns: {', '.join(map(str, row))})",
                        path=path, line=line, field=text_field)
    if label_field not in row:
        raise DataError(f"missing label column (columns: {', '.join(map(str, row))})",
                        path=path, line=line, field=label_field)
    text = row[text_field]
    if text is not None and not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__} {text!r:.40}",
                        path=path, line=line, field=text_field)
    if text is None or not text.strip():
        raise DataError("empty text", path=path, line=line, field=text_field)
    return Example(text.strip(), _label(row[label_field], path, line, label_field),
                   source=str(path), line=line)


def read_examples(path: str | Path, *, text_field: str = "text", label_field: str = "label",
                  skip_empty_text: bool = False) -> list[Example]:
    """All examples of one file; the format follows the suffix (.jsonl, .csv, .tsv).

    With `skip_empty_text`, rows whose text is empty are dropped with a warning that names their
    lines (the redistributed CR training file has four); every other problem is an error."""
    skipped: list[int] = []
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unsupported file type '{path.suffix}' (use .jsonl, .csv or .tsv)",
                        path=path)
    examples: list[Example] = []
    if kind == "jsonl":
        for line, row in jsonl_rows(path):
            _append(examples, row, path, line, text_field, label_field,
                    skipped if skip_empty_text else None)
    else:
        try:
            # utf-8-sig: a byte-order mark would otherwise become part of the first column name
            with path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle, delimiter="," if kind == "csv" else "\t")
                _check_header(reader.fieldnames or [], path)
                for row in reader:
                    # the header is line 1; a quoted field may span lines, so ask the reader
                    _append(examples, row, path, reader.line_num, text_field, label_field,
                            skipped if skip_empty_text else None)
        except FileNotFoundError:
            raise DataError("file not found", path=path) from None
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", path=path) from None
        except OSError as exc:
            raise DataError(f"cannot read file ({exc.strerror})", path=path) from None
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} rows with empty text "
                      f"(lines {', '.join(map(str, skipped[:10]))})", stacklevel=2)
    return examples


def _check_header(columns: list[str], path: Path) -> None:
    """csv.DictReader keeps only the last of two same-named columns; which one was meant is
    unknowable, so refuse rather than silently read the wrong text or label."""
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataError(f"duplicate column '{column}' in the header "
                            f"(columns: {', '.join(columns)}); rename or drop one",
                            path=path, line=1, field=column)
        seen.add(column)


def _append(examples: list[Example], row: dict, path: Path, line: int, text_field: str,
            label_field: str, skipped: list[int] | None) -> None:
    text = row.get(text_field)
    if skipped is not None and isinstance(text, str) and not text.strip():
        skipped.append(line)
        return
    examples.append(_example(row, path, line, text_field, label_field))
