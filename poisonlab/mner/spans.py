"""BIO tags <-> entity spans, with the orphan rule of the scorer everyone compares with.

An `I-X` that follows `O` or a tag of another type starts a new entity (conlleval does this; it is
why Twitter-2015 test has 5,207 gold entities)."""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):
    """Entity span over words; `end` is inclusive."""

    start: int
    end: int
    type: str


def tags_to_spans(tags: list[str]) -> list[Span]:
    spans: list[Span] = []
    start, kind = -1, ""
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label and start >= 0
        if start >= 0 and not continues:
            spans.append(Span(start, i - 1, kind))
            start, kind = -1, ""
        if prefix in ("B", "I") and not continues:
            start, kind = i, label
    return spans


def spans_to_tags(spans: list[Span], length: int) -> list[str]:
    """BIO tags for non-overlapping spans (a later overlapping span overwrites an earlier one)."""
    tags = ["O"] * length
    for span in spans:
        tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end + 1):
            tags[i] = f"I-{span.type}"
    return tags
