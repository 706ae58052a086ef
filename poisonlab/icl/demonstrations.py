"""Demonstrations: choosing them (a fixed list, or a seeded class-balanced sample) and writing the
context that precedes every query.

A demonstration carries its own template, so a prompt attack can word some demonstrations
differently; a query is a demonstration whose label word is left for the model."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from poisonlab.data.example import Example
from poisonlab.errors import ConfigError
from poisonlab.icl.template import PromptTemplate
from poisonlab.icl.verbalizer import Verbalizer


@dataclass(frozen=True)
class Demonstration:
    text: str
    label: int
    template: PromptTemplate
    poisoned: bool = False

    def with_text(self, text: str) -> "Demonstration":
        """A poisoned copy with new text (the label never changes: attacks are clean-label)."""
        return replace(self, text=text, poisoned=True)

    def with_template(self, template: PromptTemplate) -> "Demonstration":
        """A poisoned copy written with another template wording."""
        return replace(self, template=template, poisoned=True)


def sample_balanced(pool: list[Example], shots_per_class: int, num_labels: int,
                    seed: int) -> list[Example]:
    """`shots_per_class` examples of every class, drawn with `seed`, then shuffled together."""
    rng = random.Random(seed)
    chosen: list[Example] = []
    for label in range(num_labels):
        members = [e for e in pool if e.label == label]
        if len(members) < shots_per_class:
            raise ConfigError(f"demonstrations: class {label} has {len(members)} examples in the "
                              f"pool, fewer than shots_per_class={shots_per_class}")
        chosen.extend(rng.sample(members, shots_per_class))
    rng.shuffle(chosen)
    return chosen


def as_demonstrations(examples: list[Example], template: PromptTemplate) -> list[Demonstration]:
    return [Demonstration(e.text, e.label, template) for e in examples]


def render_context(demonstrations: list[Demonstration], verbalizer: Verbalizer,
                   separator: str = "\n") -> str:
    """The shared prefix: every demonstration with its label word, each followed by `separator`.

    Ending on the separator keeps the prefix/query token boundary where a BPE pre-tokenizer
    splits anyway, so caching the prefix changes no token."""
    return "".join(d.template.demonstration(d.text, verbalizer.display_word(d.label)) + separator
                   for d in demonstrations)


def render_queries(queries: list[Demonstration]) -> list[str]:
    return [q.template.query(q.text) for q in queries]
