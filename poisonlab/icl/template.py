"""Prompt templates: how one demonstration or one query is written.

A template is a string holding `{text}` once and `{label}` once, text first. A demonstration fills
both; a query stops right before `{label}`, so the model's next token is the answer. A space right
before `{label}` belongs to the label word (" great" is one BPE token, "great" after a trailing
space is not), so a query never ends in a space and label words are scored with that space."""

from __future__ import annotations

from dataclasses import dataclass

from poisonlab.errors import ConfigError


@dataclass(frozen=True)
class PromptTemplate:
    wording: str = "{text} It was {label}."

    def __post_init__(self) -> None:
        if self.wording.count("{text}") != 1 or self.wording.count("{label}") != 1:
            raise ConfigError(f"template '{self.wording}': needs exactly one {{text}} and one "
                              "{label}, e.g. '{text} It was {label}.'")
        if self.wording.index("{text}") > self.wording.index("{label}"):
            raise ConfigError(f"template '{self.wording}': {{text}} must come before {{label}}")

    @property
    def _head(self) -> str:
        return self.wording.split("{label}")[0]

    @property
    def label_prefix(self) -> str:
        """What goes before a label word when it is scored: the space the template puts there."""
        return " " if self._head.endswith(" ") else ""

    def demonstration(self, text: str, word: str) -> str:
        # str.replace, not str.format: texts may hold braces.
        return self.wording.replace("{text}", text).replace("{label}", word)

    def query(self, text: str) -> str:
        return self._head.replace("{text}", text).rstrip(" ")
