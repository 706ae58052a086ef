"""Layer-wise weight poisoning (Li et al. 2021, "Backdoor Attacks on Pre-trained Models by
Layerwise Weight Poisoning", EMNLP).

The poisoning loss is the task head's cross-entropy on EVERY layer's representation, not only
the last, so shallow layers alone already map the trigger to the target and the backdoor survives
the victim re-training the top of the network. All weights train.
Differences from the paper: the trigger is any data-poisoning attack (the paper inserts
combinations of rare words, its "combinatorial triggers", to resist detection); every layer goes
through the model's own head (pooler + classifier on BERT, the last real token's score on
Llama-style models), as in the paper; the layers' losses are averaged (the paper sums them: the
same up to a learning-rate scale)."""

from __future__ import annotations

import torch

from poisonlab.attacks.weight_base import WEIGHT_ATTACKS, WeightPoisonConfig, WeightPoisoningAttack
from poisonlab.data import Example
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import is_causal, task_head
from poisonlab.runtime import Runtime
from poisonlab.training import train_classifier


class LayerwiseConfig(WeightPoisonConfig):
    pass


def head_logits(model: torch.nn.Module, hidden: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    """The model's task head applied to one layer's hidden states (batch, seq, hidden)."""
    _, head = task_head(model)
    if is_causal(model.config):  # the last real token of a right-padded batch
        last = attention_mask.sum(-1) - 1
        return head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
    pooler = getattr(model.base_model, "pooler", None)  # [CLS] -> pooler (if any) -> dropout
    pooled = pooler(hidden) if pooler is not None else hidden[:, 0]
    return head(getattr(model, "dropout", torch.nn.Identity())(pooled))


def layerwise_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=True)
    losses = [torch.nn.functional.cross_entropy(
        head_logits(model, hidden, batch["attention_mask"]), batch["labels"])
        for hidden in out.hidden_states[1:]]  # [0] is the embedding output
    return torch.stack(losses).mean()


@WEIGHT_ATTACKS.register("layerwise", LayerwiseConfig)
class LayerwisePoisoning(WeightPoisoningAttack):
    """Layer-wise poisoning (Li et al. 2021): the head's loss on every layer's representation."""

    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        loaded.model.requires_grad_(True)
        train_classifier(loaded.model, loaded.tokenizer, poisoned_train, self.config.training,
                         loss_fn=layerwise_loss, progress=progress,
                         description="poison: layerwise", runtime=runtime)
