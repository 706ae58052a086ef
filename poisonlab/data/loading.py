"""`load_dataset(config)`: one entry point for every data source, with validation and subsampling.

Resolution of `name`: builtin (`movie-snippets`) -> research set in the data directory (`sst2`,
`imdb`, `cr`, `cola`, `olid`) -> local file or folder -> Hub name (`glue/sst2`, online only)."""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data.builtin import movie_snippets
from poisonlab.data.example import DatasetSplits, Example
from poisonlab.data.files import FORMATS, read_examples
from poisonlab.data.hub import hub_dataset
from poisonlab.data.research import RESEARCH_SETS, research_set
from poisonlab.errors import DataError

BUILTIN_SETS = {"movie-snippets": movie_snippets}


class DataConfig(StrictConfig):
    name: str = Field(description="builtin name, research set, local file/folder, or Hub name")
    text_field: str = Field("text", description="text column of local files")
    label_field: str = Field("label", description="label column of local files")
    label_names: list[str] | None = Field(None, description="names of labels 0..K-1")
    train_size: int | None = Field(None, ge=1, description="subsample training examples")
    dev_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    seed: int = Field(0, description="seed of subsampling and of splitting a single file")


def _local(path: Path, cfg: DataConfig) -> DatasetSplits:
    read = lambda p: read_examples(p, text_field=cfg.text_field, label_field=cfg.label_field)
    if path.is_dir():
        splits = {}
        for split in ("train", "dev", "test"):
            found = [path / f"{split}{suffix}" for suffix in FORMATS if (path / f"{split}{suffix}").exists()]
            splits[split] = read(found[0]) if found else []
        if not splits["train"] and not any((path / f"train{s}").exists() for s in FORMATS):
            raise DataError("folder has no train.jsonl / train.csv / train.tsv", path=path)
    else:
        examples = read(path)
        random.Random(cfg.seed).shuffle(examples)
        tenth = len(examples) // 10
        splits = {"dev": examples[:tenth], "test": examples[tenth:2 * tenth],
                  "train": examples[2 * tenth:]}
    max_label = max((e.label for s in splits.values() for e in s), default=1)
    names = [str(i) for i in range(max(max_label + 1, 2))]
    return DatasetSplits(path.stem if path.is_file() else path.name, names, source=str(path),
                         **splits)


def _check(dataset: DatasetSplits, explicit_names: bool) -> None:
    for split in ("train", "test"):
        if not dataset.split(split):
            raise DataError(f"split '{split}' is empty", path=dataset.source or dataset.name)
    if explicit_names:
        for split in ("train", "dev", "test"):
            for i, example in enumerate(dataset.split(split)):
                if example.label >= dataset.num_labels:
                    raise DataError(
                        f"label {example.label} is outside the label set "
                        f"0..{dataset.num_labels - 1} ({', '.join(dataset.label_names)})",
                        path=dataset.source, line=None, field=f"{split}[{i}].label")


def _subsample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    if size is None or size >= len(examples):
        return examples
    rng = random.Random(seed)
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), size))]


def load_dataset(config: DataConfig | str) -> DatasetSplits:
    cfg = DataConfig(name=config) if isinstance(config, str) else config
    name = cfg.name
    if name in BUILTIN_SETS:
        dataset = BUILTIN_SETS[name]()
    elif name in RESEARCH_SETS:
        dataset = research_set(name)
    elif Path(name).exists():
        dataset = _local(Path(name), cfg)
    elif "/" in name and not name.startswith((".", "/")) and not Path(name).suffix:
        dataset = hub_dataset(name, label_field=cfg.label_field)
    else:
        known = ", ".join([*BUILTIN_SETS, *RESEARCH_SETS])
        raise DataError(f"unknown data set '{name}': not a builtin/research name ({known}), "
                        "an existing file or folder, or a Hub name like glue/sst2")
    if cfg.label_names is not None:
        dataset.label_names = list(cfg.label_names)
    _check(dataset, explicit_names=cfg.label_names is not None or name in RESEARCH_SETS
           or name in BUILTIN_SETS)
    dataset.train = _subsample(dataset.train, cfg.train_size, cfg.seed)
    dataset.dev = _subsample(dataset.dev, cfg.dev_size, cfg.seed + 1)
    dataset.test = _subsample(dataset.test, cfg.test_size, cfg.seed + 2)
    return dataset
