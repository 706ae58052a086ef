"""Plain PEFT fine-tuning on the defender's clean data (CE only): W2SDefense's main baseline.

It isolates what the distillation adds: the same strategy, data and settings as `w2sdefense`
with a = 1, b = c = 0 and no teacher."""

from __future__ import annotations

from typing import Sequence

from poisonlab.data import Example
from poisonlab.defenses.repair_base import REPAIRS, RepairConfig, RepairDefense, RepairedModel
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.runtime import Runtime
from poisonlab.training import train_classifier


@REPAIRS.register("finetune", RepairConfig)
class FineTune(RepairDefense):
    """Fine-tuning (baseline of Liu et al. 2018): a PEFT adapter of the suspect on clean data."""

    def repair(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
               progress: bool = False, cache: ModelCache | None = None,
               runtime: Runtime | None = None) -> RepairedModel:
        strategy, model = self.wrap(suspect)
        history = train_classifier(model, suspect.tokenizer, clean_train, self.config.training,
                                   progress=progress, description="finetune",
                                   runtime=runtime)
        return RepairedModel(model.eval(), suspect.tokenizer, strategy.trainable_state(model),
                             history)
