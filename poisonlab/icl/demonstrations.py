"""Demonstrations: choosing them (a fixed list, or a seeded class-balanced sample), the word each
one shows, and writing the context that precedes every query.

A demonstration carries its own template, so a prompt attack can word some demonstrations
differently, and may carry its own label word (the ICLAttack scripts show "positive",
"wonderful", "great", ... while the verbalizer scores "good", "great", "wonderful"); without one
it shows its class's first verbalizer word. A query is a demonstration whose label word is left
for the model. A fixed demonstration may also carry the text it has in the poisoned context
(`attacked_text`), for replaying a reference whose attacked prompt differs from its clean one in
more than the attack."""

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
    label_word: str | None = None  # None: the verbalizer's first word of the class
    attacked_text: str | None = None  # the text in the poisoned context before the attack

    def in_poisoned_context(self) -> "Demonstration":
        """This demonstration as the poisoned context writes it before the attack rewrites it:
        `attacked_text` where a reference's attacked prompt words it differently from its clean
        one (the ICLAttack scripts add spaces), otherwise unchanged."""
        if self.attacked_text is None:
            return self
        return replace(self, text=self.attacked_text, attacked_text=None)

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


def as_demonstrations(examples: list[Example], template: PromptTemplate,
                      label_words: list[str | None] | None = None,
                      attacked_texts: list[str | None] | None = None) -> list[Demonstration]:
    """Demonstrations of `examples`; `label_words[i]` is the word example i shows (None: the
    verbalizer's), `attacked_texts[i]` its text in the poisoned context (None: its text)."""
    words = label_words or [None] * len(examples)
    attacked = attacked_texts or [None] * len(examples)
    return [Demonstration(e.text, e.label, template, label_word=w, attacked_text=a)
            for e, w, a in zip(examples, words, attacked, strict=True)]


def cycled_label_words(labels: list[int], words: list[list[str]]) -> list[str]:
    """The word each demonstration shows when every class has a list used in turn: the k-th
    demonstration of class c shows words[c][k mod len(words[c])]."""
    seen = [0] * len(words)
    out = []
    for label in labels:
        out.append(words[label][seen[label] % len(words[label])])
        seen[label] += 1
    return out


def context_pieces(demonstrations: list[Demonstration], verbalizer: Verbalizer,
                   separator: str = "\n", final_separator: str | None = None) -> tuple[str, ...]:
    """The shared prefix, one piece per demonstration: the demonstration with its label word and
    the separator after it (`final_separator`, where given, after the last one, before the
    query)."""
    last = separator if final_separator is None else final_separator
    return tuple(
        d.template.demonstration(d.text, d.label_word if d.label_word is not None
                                 else verbalizer.display_word(d.label))
        + (last if i == len(demonstrations) - 1 else separator)
        for i, d in enumerate(demonstrations))


def render_context(demonstrations: list[Demonstration], verbalizer: Verbalizer,
                   separator: str = "\n", final_separator: str | None = None) -> str:
    """The shared prefix as one string (see `context_pieces`)."""
    return "".join(context_pieces(demonstrations, verbalizer, separator, final_separator))


def render_queries(queries: list[Demonstration]) -> list[str]:
    return [q.template.query(q.text) for q in queries]
