"""`load_dataset(config)`: one entry point for every data source, with validation and subsampling.

Resolution of `name`: builtin (`movie-snippets`, `trec4`) -> research set in the data directory (`sst2`,
`imdb`, `cr`, `cola`, `olid`) -> local file or folder -> Hub name (`stanfordnlp/sst2`,
`glue/sst2`; online or from the local Hub cache)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data.builtin import movie_snippets, trec4
from poisonlab.data.example import DatasetSplits, Example
from poisonlab.data.files import FORMATS, read_examples
from poisonlab.data.hub import hub_dataset, is_hub_name
from poisonlab.data.research import RESEARCH_SETS, research_set
from poisonlab.errors import DataError

BUILTIN_SETS = {"movie-snippets": movie_snippets, "trec4": trec4}


class DataConfig(StrictConfig):
    name: str = Field(description="builtin name, research set, local file/folder, or Hub name")
    text_field: str = Field("text", description="text column of local files")
    label_field: str = Field("label", description="label column of local files")
    label_names: list[str] | None = Field(None, description="names of labels 0..K-1")
    train_size: int | None = Field(None, ge=1, description="subsample training examples")
    dev_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    seed: int = Field(0, description="seed of subsampling and of splitting a single file")
    allow_single_class: bool = Field(
        False, description="accept a training split with a single class (with a warning); "
                           "for measuring degenerate cases, e.g. an all-target training set")


def _local(path: Path, cfg: DataConfig) -> DatasetSplits:
    read = lambda p: read_examples(p, text_field=cfg.text_field, label_field=cfg.label_field)
    if path.is_dir():
        splits = {}
        for split in ("train", "dev", "test"):
            found = [path / f"{split}{suffix}" for suffix in FORMATS
                     if (path / f"{split}{suffix}").is_file()]
            if split == "train" and not found:
                raise DataError("folder has no train file "
                                f"({', '.join(f'train{s}' for s in FORMATS)})", path=path)
            splits[split] = read(found[0]) if found else []
    elif path.is_file() and path.suffix.lower() in FORMATS:
        examples = read(path)
        random.Random(cfg.seed).shuffle(examples)
        tenth = len(examples) // 10
        splits = {"dev": examples[:tenth], "test": examples[tenth:2 * tenth],
                  "train": examples[2 * tenth:]}
    else:
        raise DataError(f"neither a data file ({', '.join(FORMATS)}) nor a folder with "
                        "train/dev/test files", path=path)
    return DatasetSplits(path.stem if path.is_file() else path.name,
                         _inferred_names(splits["train"]), source=str(path), **splits)


def _inferred_names(train: list[Example]) -> list[str]:
    """"0".."K-1" for the K training labels. The label set comes from training only: a dev/test
    label the model never saw cannot be predicted, and a head sized by it yields NaN metrics.
    At least two names, so that a (forced) single-class training set is still a binary task."""
    return [str(i) for i in range(max(len({e.label for e in train}), 2))]


def _where(example: Example, split: str, index: int, dataset: DatasetSplits) -> dict:
    """File, line and field of an example, as precise as its provenance allows."""
    if example.source:
        return {"path": example.source, "line": example.line, "field": "label"}
    return {"path": dataset.source or dataset.name, "field": f"{split}[{index}].label"}


def _check_labels(dataset: DatasetSplits, inferred: bool) -> None:
    last = dataset.num_labels - 1
    for split in ("train", "dev", "test"):
        for i, example in enumerate(dataset.split(split)):
            if example.label <= last:
                continue
            where = _where(example, split, i, dataset)
            if inferred and split == "train":
                found = sorted({e.label for e in dataset.train})
                shown = ", ".join(map(str, found[:20])) + (", ..." if len(found) > 20 else "")
                raise DataError(f"labels must be 0..K-1 without gaps; found {shown}; "
                                "give data.label_names to name them", **where)
            if inferred:
                raise DataError(f"label {example.label} is outside the label set 0..{last} "
                                "inferred from the training split; give data.label_names if "
                                "the data set has more labels", **where)
            raise DataError(f"label {example.label} is outside the label set 0..{last} "
                            f"({', '.join(dataset.label_names)})", **where)


def _check_classes(dataset: DatasetSplits, allow_single_class: bool) -> None:
    classes = {e.label for e in dataset.train}
    if len(classes) != 1:
        return
    (label,) = classes
    path = dataset.train[0].source or dataset.source or dataset.name
    if not allow_single_class:
        raise DataError(f"training split has a single class (label {label}): nothing to learn; "
                        "check data.label_field, or set data.allow_single_class: true to "
                        "measure this degenerate case", path=path)
    warnings.warn(f"{path}: training split has a single class (label {label}); training anyway "
                  "because data.allow_single_class is set", stacklevel=4)


def _check(dataset: DatasetSplits, *, labels_checked: bool, inferred: bool,
           allow_single_class: bool) -> None:
    for split in ("train", "test"):
        if not dataset.split(split):
            raise DataError(f"split '{split}' is empty", path=dataset.source or dataset.name)
    if labels_checked:
        _check_labels(dataset, inferred)
    _check_classes(dataset, allow_single_class)


def _subsample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    if size is None or size >= len(examples):
        return examples
    rng = random.Random(seed)
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), size))]


def load_dataset(config: DataConfig | str) -> DatasetSplits:
    cfg = DataConfig(name=config) if isinstance(config, str) else config
    name = cfg.name
    local = hub = False
    if name in BUILTIN_SETS:
        dataset = BUILTIN_SETS[name]()
    elif name in RESEARCH_SETS:
        dataset = research_set(name)
    elif Path(name).exists():
        local = True
        dataset = _local(Path(name), cfg)
    elif is_hub_name(name):
        hub = True
        dataset = hub_dataset(name, label_field=cfg.label_field)
    else:
        known = ", ".join([*BUILTIN_SETS, *RESEARCH_SETS])
        raise DataError(f"unknown data set '{name}': not a builtin/research name ({known}), "
                        "an existing file or folder, or a Hub name (org/name such as "
                        "stanfordnlp/sst2, org/name/config, or name/config such as glue/sst2)")
    if cfg.label_names is not None:
        dataset.label_names = list(cfg.label_names)
    names_given = cfg.label_names is not None
    # Hub sets carry their own label names; local sets without names get them from training
    _check(dataset, labels_checked=names_given or not hub, inferred=local and not names_given,
           allow_single_class=cfg.allow_single_class)
    dataset.train = _subsample(dataset.train, cfg.train_size, cfg.seed)
    dataset.dev = _subsample(dataset.dev, cfg.dev_size, cfg.seed + 1)
    dataset.test = _subsample(dataset.test, cfg.test_size, cfg.seed + 2)
    return dataset
