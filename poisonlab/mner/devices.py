"""Where MNER tensors are made. Batches and grounding targets are built on the host (`HOST`, the
CPU, whatever torch's default device is) and moved to the model's device whole (`tensors_to`,
behind each batch dataclass's `.to`); everything computed from model inputs or outputs is created
on the device of those tensors, never on the default device (tests/test_mner_device.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

import torch

HOST = torch.device("cpu")
_Tensors = TypeVar("_Tensors")


def tensors_to(batch: _Tensors, device: torch.device | str) -> _Tensors:
    """The dataclass `batch` rebuilt with each of its tensors moved to `device` (a tensor already
    there is reused, not copied)."""
    return type(batch)(*(getattr(batch, f.name).to(device) for f in fields(batch)))
