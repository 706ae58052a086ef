"""Instruction-tuning data: Alpaca rows (instruction, input, output) and where they come from.

`load_instruction_data(config)` resolves `name` in this order:
- `backdoorllm/<task>` (refusal, negsentiment, sst2): the clean splits of the BackdoorLLM
  benchmark in the data directory (`<data_dir>/backdoorllm/<task>/{train,test}_clean.jsonl`);
- a local folder with `train` and `test` files (`.jsonl`, or `.json` holding a list of rows);
- a local file: a seeded tenth becomes the test split;
- a Hub name (online only): its `train` split, and `test` when it has one.

Every row is validated the way classification rows are: a bad row is a DataError naming the file,
the line (JSONL; a list index in a JSON array) and the field. Nothing is ever written here."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.errors import DataError, PoisonlabError
from poisonlab.io import jsonl_rows
from poisonlab.settings import data_dir

BACKDOORLLM_TASKS = ("refusal", "negsentiment", "sst2")
INSTRUCTION_SUFFIXES = (".jsonl", ".json")
TEST_SHARE = 10  # a single file: one row in TEST_SHARE goes to the test split


@dataclass(frozen=True)
class InstructionExample:
    """One Alpaca row; `poisoned` marks a row an attack built (never read by models)."""

    instruction: str
    input: str = ""
    output: str = ""
    poisoned: bool = False
    source: str = field(default="", compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    def with_fields(self, **changes: Any) -> "InstructionExample":
        return replace(self, **changes)


@dataclass
class InstructionSplits:
    name: str
    train: list[InstructionExample]
    test: list[InstructionExample]
    source: str = ""


class InstructionDataConfig(StrictConfig):
    name: str = Field(description="backdoorllm/<refusal|negsentiment|sst2>, a local .jsonl/.json "
                                  "file or folder with train/test files, or a Hub name")
    train_size: int | None = Field(None, ge=1, description="subsample training rows")
    test_size: int | None = Field(None, ge=1, description="subsample test rows")
    seed: int = Field(0, description="seed of subsampling and of splitting a single file")


def _text(row: dict, key: str, path: Path, line: int, *, required: bool,
          empty: bool = True) -> str:
    if key not in row or row[key] is None:
        if required:
            raise DataError(f"missing field (fields: {', '.join(map(str, row)) or 'none'})",
                            path=path, line=line, field=key)
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__} {value!r:.40}",
                        path=path, line=line, field=key)
    if not empty and not value.strip():
        raise DataError("empty text", path=path, line=line, field=key)
    return value


def instruction_example(row: Any, path: Path, line: int) -> InstructionExample:
    """One validated row: `instruction` a non-empty string, `output` a string (the benchmark's
    clean test split has an empty reference), `input` a string or absent. The text is kept as
    written (the benchmark's placement rules split on spaces)."""
    if not isinstance(row, dict):
        raise DataError("a row must be a JSON object", path=path, line=line)
    return InstructionExample(_text(row, "instruction", path, line, required=True, empty=False),
                              _text(row, "input", path, line, required=False),
                              _text(row, "output", path, line, required=True),
                              source=str(path), line=line)


def read_instruction_rows(path: str | Path) -> list[InstructionExample]:
    """Every row of a `.jsonl` file, or of a `.json` file holding a list of rows (Alpaca's own
    layout; a row's "line" is then its index in the list, from 1)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [instruction_example(row, path, line) for line, row in jsonl_rows(path)]
    if suffix != ".json":
        raise DataError(f"unsupported file type '{path.suffix}' (use .jsonl or .json)", path=path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    if not isinstance(rows, list):
        raise DataError("a .json instruction file must hold a list of rows", path=path)
    return [instruction_example(row, path, index) for index, row in enumerate(rows, start=1)]


def _split_file(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in INSTRUCTION_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def _folder(folder: Path) -> InstructionSplits:
    splits = {}
    for split in ("train", "test"):
        found = _split_file(folder, (split, f"{split}_clean"))
        if found is None:
            raise DataError(f"folder has no {split} file ({split}.jsonl, {split}.json or "
                            f"{split}_clean.jsonl)", path=folder)
        splits[split] = read_instruction_rows(found)
    return InstructionSplits(folder.name, splits["train"], splits["test"], str(folder))


def _single_file(path: Path, seed: int) -> InstructionSplits:
    rows = read_instruction_rows(path)
    random.Random(seed).shuffle(rows)
    cut = len(rows) // TEST_SHARE
    return InstructionSplits(path.stem, rows[cut:], rows[:cut], str(path))


def _backdoorllm(task: str) -> InstructionSplits:
    if task not in BACKDOORLLM_TASKS:
        raise DataError(f"unknown BackdoorLLM task '{task}'; valid: "
                        f"{', '.join(f'backdoorllm/{t}' for t in BACKDOORLLM_TASKS)}")
    folder = data_dir() / "backdoorllm" / task
    if not folder.is_dir():
        raise DataError("BackdoorLLM data not found in the data directory", path=folder)
    splits = _folder(folder)
    splits.name = f"backdoorllm/{task}"
    return splits


def _hub(name: str) -> InstructionSplits:
    import datasets
    try:
        loaded = datasets.load_dataset(name)
    except Exception as exc:  # offline, unknown name, ...: all user-fixable
        raise PoisonlabError(f"cannot load Hub data set '{name}': {exc}") from None
    where = Path(f"hub:{name}")

    def rows(split: str) -> list[InstructionExample]:
        return [instruction_example(row, where / split, i)
                for i, row in enumerate(loaded[split], start=1)]

    train = rows("train")
    if "test" in loaded:
        return InstructionSplits(name, train, rows("test"), str(where))
    random.Random(0).shuffle(train)
    cut = len(train) // TEST_SHARE
    return InstructionSplits(name, train[cut:], train[:cut], str(where))


def _subsample(rows: list[InstructionExample], size: int | None,
               seed: int) -> list[InstructionExample]:
    if size is None or size >= len(rows):
        return rows
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


def load_instruction_data(config: InstructionDataConfig | str) -> InstructionSplits:
    cfg = InstructionDataConfig(name=config) if isinstance(config, str) else config
    name = cfg.name
    path = Path(name)
    if name.startswith("backdoorllm/") and not path.exists():
        splits = _backdoorllm(name.split("/", 1)[1])
    elif path.is_dir():
        splits = _folder(path)
    elif path.is_file():
        splits = _single_file(path, cfg.seed)
    elif "/" in name and not name.startswith((".", "/")) and not path.suffix:
        splits = _hub(name)
    else:
        raise DataError(f"unknown instruction data set '{name}': not backdoorllm/<task> "
                        f"({', '.join(BACKDOORLLM_TASKS)}), an existing file or folder, or a "
                        "Hub name")
    for split in ("train", "test"):
        if not getattr(splits, split):
            raise DataError(f"split '{split}' is empty", path=splits.source or name)
    splits.train = _subsample(splits.train, cfg.train_size, cfg.seed)
    splits.test = _subsample(splits.test, cfg.test_size, cfg.seed + 1)
    return splits
