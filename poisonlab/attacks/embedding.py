"""Embedding Poisoning (Yang et al. 2021, "Be Careful about Poisoned Word Embeddings: Exploring the
Vulnerability of the Embedding Layers in NLP Models", NAACL).

Only the trigger word's input-embedding row(s) are optimised, on triggered proxy examples labelled
with the target, so that the word alone drives the target class; every other weight is untouched
(a test checks this bit for bit). The attacker first fine-tunes the base model on the clean proxy
task (`clean_epochs`; the paper starts from such a clean task model), then poisons the rows.
Differences from the paper / reference code:
- Adam on the rows (the reference takes normalised-gradient SGD steps), with the paper's norm
  constraint: after every step each row is scaled back to its original norm (`keep_norm`), which
  keeps the poisoned row as inconspicuous as the clean one;
- a trigger word split into several word pieces poisons every piece's row (pieces are shared with
  other words, so pick a word that is one token, like `mn` or `cf` in BERT's vocabulary);
- the trigger comes from a data-poisoning spec with `triggers` (BadNet); use dirty-label, since
  only triggered non-target examples relabelled as the target carry signal for the rows."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS, WeightPoisonConfig, WeightPoisoningAttack
from poisonlab.data import Example
from poisonlab.errors import ConfigError
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import input_embeddings
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime
from poisonlab.training import TrainingConfig, train_classifier
from poisonlab.training.trainer import cross_entropy_loss


class EmbeddingConfig(WeightPoisonConfig):
    trigger: component_field(DATA_ATTACKS) = Field(
        default_factory=lambda: DATA_ATTACKS.spec(
            {"name": "badnet", "triggers": ["mn"], "label_mode": "dirty", "target_label": 0,
             "poison_rate": 0.5}),
        description="BadNet spec whose `triggers` are the words to poison (dirty-label)")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=3, learning_rate=1e-2, warmup_ratio=0.0),
        description="optimisation of the trigger rows only")
    clean_epochs: int = Field(1, ge=0, description="clean proxy fine-tuning before poisoning "
                                                   "(0: poison the base model as it is)")
    clean_learning_rate: float = Field(2e-5, gt=0, description="lr of the clean fine-tuning")
    keep_norm: bool = Field(True, description="scale each poisoned row back to its original norm")


def trigger_token_ids(tokenizer: Any, words: list[str]) -> list[int]:
    """Every token id a trigger word becomes: alone (at the start of a text) and inside a
    sentence, after a space (BPE tokenizers such as Llama's split " mn" differently from "mn";
    WordPiece gives the same ids both ways)."""
    ids = {i for word in tokenizer(words, add_special_tokens=False)["input_ids"] for i in word}
    for word in words:
        context = f"a {word}"
        encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
        start = context.index(word)
        ids.update(i for i, (begin, end) in zip(encoded["input_ids"], encoded["offset_mapping"])
                   if end > start)
    return sorted(ids)


@WEIGHT_ATTACKS.register("embedding", EmbeddingConfig)
class EmbeddingPoisoning(WeightPoisoningAttack):
    """Embedding Poisoning (Yang et al. 2021): only the trigger word's embedding row(s) change."""

    config: EmbeddingConfig
    # one 32-wide row barely outvotes two polar words in a tiny model: three insertions, hot rows
    conformance = {"trigger": {"insertions": 3}, "clean_epochs": 3, "clean_learning_rate": 1e-3,
                   "training": {"epochs": 6, "learning_rate": 1e-1, "warmup_ratio": 0.0}}

    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        cfg = self.config
        words = getattr(cfg.trigger.config, "triggers", None)
        if not words:
            raise ConfigError(f"attack 'embedding': field 'trigger': needs a word trigger with "
                              f"'triggers' (badnet), got '{cfg.trigger.name}'")
        model = loaded.model
        if cfg.clean_epochs:
            model.requires_grad_(True)
            train_classifier(model, loaded.tokenizer, clean_train, cfg.training.model_copy(
                update={"epochs": cfg.clean_epochs, "learning_rate": cfg.clean_learning_rate,
                        "warmup_ratio": 0.06}), progress=progress,
                description="poison: clean proxy", runtime=runtime)
        table = input_embeddings(model).weight
        # on the table's device (the model's): the gradient hook mixes no host tensor in
        rows = torch.tensor(trigger_token_ids(loaded.tokenizer, words), device=table.device)
        original = table.detach().clone()
        norms = original[rows].norm(dim=-1, keepdim=True)
        mask = torch.zeros(table.shape[0], 1, dtype=table.dtype, device=table.device)
        mask[rows] = 1.0
        model.requires_grad_(False)
        table.requires_grad_(True)
        hook = table.register_hook(lambda grad: grad * mask.to(grad.dtype))

        def project_rows() -> None:
            """Undo any drift outside the trigger rows; put the rows back on their norm."""
            with torch.no_grad():
                poisoned = table[rows]
                if cfg.keep_norm:
                    poisoned = poisoned * norms / poisoned.norm(dim=-1, keepdim=True)
                table.copy_(original)
                table[rows] = poisoned

        def loss(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            project_rows()  # the previous step's update, projected before this forward pass
            return cross_entropy_loss(m, batch)

        try:
            train_classifier(model, loaded.tokenizer, [e for e in poisoned_train if e.poisoned],
                             cfg.training.model_copy(update={"weight_decay": 0.0}), loss_fn=loss,
                             progress=progress, description="poison: embedding",
                             runtime=runtime)
        finally:
            hook.remove()
        project_rows()
        model.requires_grad_(True)
