"""Helpers shared by the PEFT strategies: seeding, the task head, peft wrapping, layer lookup.

Not a strategy itself (no registration here)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from poisonlab.errors import PoisonlabError

# The task-head attribute of HF sequence classifiers (BERT-like: classifier, Llama-like: score);
# the same names peft's SEQ_CLS task keeps trainable as modules_to_save.
HEAD_NAMES = ("classifier", "score")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed new-parameter initialisation without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def freeze_all_but_head(model: torch.nn.Module) -> None:
    """Freeze the base model; the task head always trains."""
    model.requires_grad_(False)
    head_found = False
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            head.requires_grad_(True)
            head_found = True
    if not head_found:
        raise PoisonlabError(f"{type(model).__name__} has no task head named one of {HEAD_NAMES}; "
                             "PEFT strategies expect a sequence classifier")


def peft_classifier(model: torch.nn.Module, peft_config, seed: int) -> torch.nn.Module:
    """Wrap a sequence classifier with peft; SEQ_CLS keeps the task head trainable."""
    from peft import get_peft_model
    with seeded(seed):
        return get_peft_model(model, peft_config)


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks (BERT: encoder.layer, Llama: model.layers)."""
    count = model.config.num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise PoisonlabError(f"cannot find the {count} transformer layers of {type(model).__name__}")


def layer_submodule(layer: torch.nn.Module, path: str, field: str) -> torch.nn.Module:
    """A module inside one transformer block, with an error that names the config field to set.

    An empty path means the architecture has no default."""
    try:
        if path:
            return layer.get_submodule(path)
    except AttributeError:
        pass
    children = ", ".join(n for n, _ in layer.named_modules() if n) or "(none)"
    raise PoisonlabError(f"no module '{path}' in {type(layer).__name__}; set '{field}' to one "
                         f"of: {children}")
