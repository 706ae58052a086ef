"""Named research data sets read from the data directory setting (layout of shared/data):
`<data_dir>/<name>/{train,dev,test}.jsonl` with `{"text", "label"}` rows.

Rows with empty text are skipped with a warning (CR's training file has four), not fatal."""

from __future__ import annotations

from poisonlab.data.example import DatasetSplits
from poisonlab.data.files import read_examples
from poisonlab.errors import DataError
from poisonlab.settings import data_dir

RESEARCH_SETS: dict[str, list[str]] = {
    "sst2": ["negative", "positive"],
    "imdb": ["negative", "positive"],
    "cr": ["negative", "positive"],
    "cola": ["unacceptable", "acceptable"],
    "olid": ["not offensive", "offensive"],
    "agnews": ["World", "Sports", "Business", "Sci/Tech"],
}


def research_set(name: str) -> DatasetSplits:
    folder = data_dir() / name
    if not folder.is_dir():
        raise DataError(f"data set '{name}' not found in the data directory", path=folder)
    splits = {split: read_examples(folder / f"{split}.jsonl", skip_empty_text=True) for split in ("train", "dev", "test")}
    return DatasetSplits(name, list(RESEARCH_SETS[name]), source=str(folder), **splits)
