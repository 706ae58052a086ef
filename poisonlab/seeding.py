"""Seeded randomness that leaves the caller's random state alone.

Low level on purpose (torch only), so any component may use it."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed new-parameter initialisation without disturbing the caller's random state (CPU RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
