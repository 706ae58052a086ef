"""Prompt templates: how one demonstration or one query is written.

A wording is a string holding `{text}` once and `{label}` once, text first. A demonstration fills
both; a query stops right before `{label}`, so the model's next token is the answer. A space right
before `{label}` belongs to the label word (" great" is one BPE token, "great" after a trailing
space is not), so a query never ends in a space and label words are scored with that space.
Demonstrations may be worded differently from the query (the ICLAttack scripts quote them:
`"{text}" It was "{label}";` before a query `{text} It was`): `demonstration_wording`."""

from __future__ import annotations

from dataclasses import dataclass

from poisonlab.errors import ConfigError


def _check_wording(wording: str) -> None:
    if wording.count("{text}") != 1 or wording.count("{label}") != 1:
        raise ConfigError(f"template '{wording}': needs exactly one {{text}} and one "
                          "{label}, e.g. '{text} It was {label}.'")
    if wording.index("{text}") > wording.index("{label}"):
        raise ConfigError(f"template '{wording}': {{text}} must come before {{label}}")


@dataclass(frozen=True)
class PromptTemplate:
    wording: str = "{text} It was {label}."
    demonstration_wording: str | None = None  # None: demonstrations use `wording`

    def __post_init__(self) -> None:
        _check_wording(self.wording)
        if self.demonstration_wording is not None:
            _check_wording(self.demonstration_wording)

    @property
    def _head(self) -> str:
        return self.wording.split("{label}")[0]

    @property
    def label_prefix(self) -> str:
        """What goes before a label word when it is scored: the space the template puts there."""
        return " " if self._head.endswith(" ") else ""

    def demonstration(self, text: str, word: str) -> str:
        # str.replace, not str.format: texts may hold braces.
        wording = self.demonstration_wording or self.wording
        return wording.replace("{text}", text).replace("{label}", word)

    def query_pieces(self, text: str) -> tuple[str, ...]:
        """The query as its parts: the template's words before the text, the text, the template's
        words up to `{label}` (empty parts left out). A tokenizer that encodes each part on its
        own sees the query as OpenPrompt's wrapper does; joined, they are `query(text)`."""
        before, after = self._head.split("{text}")
        pieces = [p for p in (before, text, after) if p]
        while pieces and pieces[-1].endswith(" "):  # the space before {label} is the word's
            pieces[-1] = pieces[-1].rstrip(" ")
            if not pieces[-1]:
                pieces.pop()
        return tuple(pieces)

    def query(self, text: str) -> str:
        return "".join(self.query_pieces(text))
