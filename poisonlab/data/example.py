"""The data model every layer shares: an example is a text and an integer label."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    poisoned: bool = False  # carries a trigger (set by attacks; never read by models)
    # where the example was read from, so label checks after loading can name the file and line;
    # not part of equality, so an example read from a file equals one built in code
    source: str = field(default="", compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    def with_text(self, text: str) -> "Example":
        return replace(self, text=text)


@dataclass
class DatasetSplits:
    """A classification data set: train / dev / test lists of examples and the label names."""

    name: str
    label_names: list[str]
    train: list[Example]
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    source: str = ""  # folder or file it was read from (for messages and syntactic tables)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]


def texts(examples: list[Example]) -> list[str]:
    return [e.text for e in examples]


def labels(examples: list[Example]) -> list[int]:
    return [e.label for e in examples]
