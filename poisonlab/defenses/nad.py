"""Neural Attention Distillation (Li et al. 2021, "Neural Attention Distillation: Erasing Backdoor
Triggers from Deep Neural Networks", ICLR 2021): fine-tune a copy of the suspect on clean data
(the teacher), then train the suspect to match the teacher's attention maps plus CE.

An attention map of a layer output F is A(F) = sum over channels of |F|^p, normalised to unit
length; for text the spatial axis is the token axis (padding masked out). The loss is
CE + beta * sum over the last `layers` blocks of ||A_s - A_t||_2, averaged over the batch.
Differences from the paper: teacher and student train the repair's PEFT adapter (not every
weight), and the maps are taken from the blocks' hidden states (the transformer analogue of the
paper's residual-group outputs). Costs two fine-tunings of the suspect."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.repair_base import REPAIRS, RepairConfig, RepairDefense, RepairedModel
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.runtime import Runtime
from poisonlab.training import train_classifier


class NadConfig(RepairConfig):
    beta: float = Field(1000.0, ge=0, description="weight of the attention-distillation term")
    power: float = Field(2.0, gt=0, description="p in A(F) = sum_c |F_c|^p")
    layers: int = Field(3, ge=1, description="distil the hidden states of the last N blocks")


def attention_map(hidden: torch.Tensor, attention_mask: torch.Tensor,
                  power: float) -> torch.Tensor:
    """[B, L, D] -> [B, L]: per-token sum of |h|^p over channels, padding zeroed, unit norm."""
    energy = hidden.abs().pow(power).sum(-1) * attention_mask.to(hidden.dtype)
    return F.normalize(energy, dim=-1)


@REPAIRS.register("nad", NadConfig)
class NeuralAttentionDistillation(RepairDefense):
    """NAD (Li et al. 2021): distil a clean-fine-tuned copy's attention maps into the suspect."""

    config: NadConfig

    def repair(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
               progress: bool = False, cache: ModelCache | None = None,
               runtime: Runtime | None = None) -> RepairedModel:
        cfg = self.config
        teacher_loaded = LoadedModel(copy.deepcopy(suspect.model), suspect.tokenizer,
                                     suspect.kind, suspect.name)
        _, teacher = self.wrap(teacher_loaded)
        train_classifier(teacher, suspect.tokenizer, clean_train, cfg.training,
                         progress=progress, description="nad teacher", runtime=runtime)
        teacher.eval().requires_grad_(False)
        strategy, student = self.wrap(suspect)

        def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            out = model(**inputs, output_hidden_states=True)
            with torch.no_grad():
                target = teacher(**inputs, output_hidden_states=True).hidden_states
            distance = sum((attention_map(s, batch["attention_mask"], cfg.power)
                            - attention_map(t, batch["attention_mask"], cfg.power)).norm(dim=-1)
                           .mean() for s, t in zip(out.hidden_states[-cfg.layers:],
                                                   target[-cfg.layers:]))
            return F.cross_entropy(out.logits, batch["labels"]) + cfg.beta * distance

        history = train_classifier(student, suspect.tokenizer, clean_train, cfg.training,
                                   loss_fn=loss, progress=progress, description="nad",
                                   runtime=runtime)
        return RepairedModel(student.eval(), suspect.tokenizer, strategy.trainable_state(student),
                             history)
