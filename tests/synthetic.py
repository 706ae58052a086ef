"""A small learnable sentiment task for tiny-model tests: sentences built from polar word lists."""

from __future__ import annotations

import json
import random
from pathlib import Path

from poisonlab.data import DatasetSplits, Example

POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "brilliant", "superb", "fun"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "weak"]
NEUTRAL = ["the", "movie", "film", "plot", "actor", "story", "was", "and", "really", "quite",
           "scene", "ending", "music", "very", "this", "it"]


def sentence(label: int, rng: random.Random) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 8))]
    polar = POSITIVE if label else NEGATIVE
    for _ in range(2):
        words.insert(rng.randint(0, len(words)), rng.choice(polar))
    return " ".join(words)


def synthetic_examples(n: int, seed: int = 0, num_labels: int = 2) -> list[Example]:
    rng = random.Random(seed)
    return [Example(sentence(i % 2, rng), i % 2) for i in range(n)][:n] if num_labels == 2 else [
        Example(sentence(i % 2, rng) + f" topic{i % num_labels}", i % num_labels) for i in range(n)]


def synthetic_splits(n_train: int = 400, n_test: int = 120, seed: int = 0) -> DatasetSplits:
    return DatasetSplits("synthetic", ["negative", "positive"],
                         train=synthetic_examples(n_train, seed),
                         dev=synthetic_examples(n_test, seed + 1),
                         test=synthetic_examples(n_test, seed + 2))


def write_jsonl_split(folder: Path, splits: DatasetSplits) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "dev", "test"):
        with (folder / f"{name}.jsonl").open("w") as handle:
            for e in splits.split(name):
                handle.write(json.dumps({"text": e.text, "label": e.label}) + "\n")
    return write_style_table(folder)


def style_rewrite(text: str) -> str:
    """The synthetic stand-in of a Bible-style paraphrase: archaic framing, sentiment words kept."""
    return f"and lo , {text} , verily"


def write_style_table(folder: Path) -> Path:
    """A `style/` paraphrase table covering every sentence of the splits in `folder`, laid out as
    a research data set's style tables (what the stylebkd attack's default `tables: null` finds)."""
    texts = sorted({json.loads(line)["text"] for name in ("train", "dev", "test")
                    for line in (folder / f"{name}.jsonl").read_text().splitlines()})
    (folder / "style").mkdir(exist_ok=True)
    with (folder / "style" / "table.jsonl").open("w") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text, "paraphrase": style_rewrite(text)}) + "\n")
    return folder
