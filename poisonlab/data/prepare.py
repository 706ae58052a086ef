"""Build a research set in the data-directory layout from its Hugging Face Hub source (online).

`<data_dir>/<name>/{train,dev,test}.jsonl`, one `{"text", "label"}` object a line, labels
0..K-1 in the order of `RESEARCH_SETS[name]`. Where the Hub hides test labels its validation
split serves as test (GLUE practice); a missing dev split is carved from train (a seeded
`CARVE_SHARE`). The folder is built beside its final place and renamed into place; an existing
set is never overwritten."""

from __future__ import annotations

import random
from pathlib import Path

from poisonlab.data.example import Example
from poisonlab.data.hub import hub_splits
from poisonlab.data.research import RESEARCH_SETS
from poisonlab.errors import DataError, PoisonlabError
from poisonlab.io import atomic_folder, write_jsonl
from poisonlab.settings import data_dir

CARVE_SHARE = 0.1
CARVE_SEED = 0

# research set -> (Hub path, subset); each maps to labels 0..K-1 in RESEARCH_SETS' order
HUB_SOURCES: dict[str, tuple[str, str | None]] = {
    "sst2": ("stanfordnlp/sst2", None),
    "imdb": ("stanfordnlp/imdb", None),
    "cr": ("SetFit/SentEval-CR", None),
    "cola": ("nyu-mll/glue", "cola"),
    "olid": ("cardiffnlp/tweet_eval", "offensive"),
    "agnews": ("fancyzhx/ag_news", None),
}


def _carve(train: list[Example]) -> tuple[list[Example], list[Example]]:
    """(train, dev): a seeded `CARVE_SHARE` of train becomes dev, both kept in their order."""
    chosen = set(random.Random(CARVE_SEED).sample(range(len(train)),
                                                  int(len(train) * CARVE_SHARE)))
    return ([e for i, e in enumerate(train) if i not in chosen],
            [e for i, e in enumerate(train) if i in chosen])


def hub_research_splits(name: str) -> dict[str, list[Example]]:
    """train/dev/test of research set `name` from the Hub. Hidden test labels make the Hub's
    validation split the test split (GLUE practice, see `hub_splits`); a dev split that is
    missing or serves as test is carved from train."""
    path, subset = HUB_SOURCES[name]
    loaded = hub_splits(path, subset, name=f"{path}/{subset}" if subset else path)
    train, dev, test = loaded.train, loaded.dev, loaded.test
    if not dev or dev is test:
        train, dev = _carve(train)
    return {"train": train, "dev": dev, "test": test}


def prepare(name: str, target_dir: str | Path | None = None) -> Path:
    """Download research set `name` into `<target_dir or the data directory>/<name>/`."""
    if name not in HUB_SOURCES:
        raise DataError(f"no Hub source for '{name}'; prepare supports "
                        f"{', '.join(HUB_SOURCES)}")
    root = Path(target_dir) if target_dir is not None else data_dir()
    final = root / name
    if final.exists():
        raise PoisonlabError(f"{final} already exists; remove it to prepare '{name}' again")
    splits = hub_research_splits(name)
    labels = len(RESEARCH_SETS[name])
    with atomic_folder(final) as building:
        for split, examples in splits.items():
            if any(e.label >= labels for e in examples):
                raise DataError(f"Hub source {HUB_SOURCES[name][0]} has labels outside "
                                f"0..{labels - 1} in its {split} split")
            write_jsonl(building / f"{split}.jsonl",
                        ({"text": e.text, "label": e.label} for e in examples))
    return final
