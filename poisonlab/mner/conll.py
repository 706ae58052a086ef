"""Reader and writer for the Twitter MNER CoNLL layout: `IMGID:<id>`, `token<TAB>tag` lines, blank
line between tweets. Tags are validated here so a bad row names its file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from poisonlab.errors import DataError
from poisonlab.io import write_text
from poisonlab.mner.spans import Span, tags_to_spans

_TAG = re.compile(r"^(O|[BI]-[A-Za-z][A-Za-z_]*)$")


@dataclass
class Tweet:
    img_id: str
    tokens: list[str]
    tags: list[str]

    @property
    def spans(self) -> list[Span]:
        return tags_to_spans(self.tags)


def read_conll(path: str | Path) -> list[Tweet]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ({exc})", path=path) from None
    tweets: list[Tweet] = []
    current: Tweet | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            current = None
            continue
        if line.startswith("IMGID:"):
            current = Tweet(line[len("IMGID:"):].strip(), [], [])
            tweets.append(current)
            continue
        if current is None:
            raise DataError("token line before any IMGID: line", path=path, line=number)
        token, tab, tag = line.rpartition("\t")
        if not tab or not token:
            raise DataError("expected 'token<TAB>tag'", path=path, line=number)
        tag = tag.strip()
        if not _TAG.match(tag):
            raise DataError(f"tag '{tag}' is not O, B-TYPE or I-TYPE", path=path, line=number,
                            field="tag")
        current.tokens.append(token)
        current.tags.append(tag)
    empty = [t.img_id for t in tweets if not t.tokens]
    if empty:
        raise DataError(f"tweet IMGID:{empty[0]} has no tokens", path=path)
    return tweets


def format_conll(tweets: list[Tweet]) -> str:
    blocks = [f"IMGID:{t.img_id}\n" + "".join(f"{tok}\t{tag}\n" for tok, tag in zip(t.tokens, t.tags))
              for t in tweets]
    return "\n".join(blocks)


def write_conll(path: str | Path, tweets: list[Tweet]) -> Path:
    return write_text(path, format_conll(tweets))


def entity_types(tweets: list[Tweet]) -> list[str]:
    return sorted({span.type for t in tweets for span in t.spans})
