"""`ModelCache`: the one place where trained or loaded models are shared between components.

What it holds: models (with what travels with them: tokenizer, history, a scorer's memo) that
cost a training or a load and that several components of one study may need unchanged: PSIM's
module fitted on a release (shared by every victim tuned from it), ONION's language model with
its memo of word scores, W2SDefense's fine-tuned teacher. Each entry is keyed by everything its
value depends on, so a hit returns what the component would have computed itself.

Why it is explicit: a component never shares anything on its own (no module-level caches); the
caller that knows the scope of sharing (a study run, one pipeline run) creates a cache and passes
it, so two components of one kind only share work when that caller asks for it.

Why it is bounded: an entry can be a whole model (a 7B suspect for PSIM), so the cache keeps at
most `max_entries` of them and drops the least recently used one when full.

Not a registered component; nothing here knows about any defense."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class ModelCache:
    """An LRU cache of at most `max_entries` values, keyed by hashable keys.

    Keys start with the name of what they hold (e.g. `("psim", ...)`) so components sharing one
    cache never collide. Values are returned as stored: a component that changes what it gets
    must copy it first."""

    def __init__(self, max_entries: int = 4):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value stored under `key`, or `make()` stored under it (evicting the least
        recently used entry when the cache is full)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        value = make()
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def __repr__(self) -> str:
        return (f"ModelCache({len(self)}/{self.max_entries} entries, {self.hits} hits, "
                f"{self.misses} misses)")
