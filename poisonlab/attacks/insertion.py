"""Inserting a trigger between the words of a text: the one rule BadNet, InsertSent and the
in-context demonstration attack share. A text is split on whitespace and joined with single spaces;
where the trigger goes is a position name, drawn from `rng` when it is "random"."""

from __future__ import annotations

import random
from typing import Literal, Sequence

Position = Literal["random", "start", "middle", "end"]


def insertion_index(n_words: int, position: Position, rng: random.Random | None = None) -> int:
    """Where a trigger goes among `n_words` words: 0 (start), n_words // 2 (middle), n_words
    (end), or a uniform draw from 0..n_words (random, one `rng.randint` call)."""
    if position == "start":
        return 0
    if position == "middle":
        return n_words // 2
    if position == "end":
        return n_words
    if position == "random":
        if rng is None:
            raise ValueError("position 'random' needs an rng")
        return rng.randint(0, n_words)
    raise ValueError(f"unknown insertion position {position!r}")


def insert_trigger(text: str, trigger: str | Sequence[str], position: Position,
                   rng: random.Random | None = None) -> str:
    """`text` with `trigger` inserted between its words at `position`. A string is inserted as one
    unit (a word, or a sentence kept whole); a list of strings is inserted one after another, each
    at its own position among the words so far (a random position is drawn anew for each)."""
    units = [trigger] if isinstance(trigger, str) else trigger
    words = text.split()
    for unit in units:
        words.insert(insertion_index(len(words), position, rng), unit)
    return " ".join(words)
