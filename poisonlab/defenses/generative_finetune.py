"""Clean fine-tuning of a backdoored instruction-tuned model: a fresh PEFT module (default LoRA)
on top of the suspect's weights, trained on the defender's clean instruction rows.

The classic repair (fine-tuning on clean data, the second half of Liu et al. 2018's
fine-pruning): training on clean answers pulls the model back towards the clean behaviour, but
the trigger never appears in the clean data, so nothing pushes its path out directly. A LoRA suspect is merged first, so the new module trains on top of the weights the
suspect computes with."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field

from poisonlab.data.instruction import InstructionExample
from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, GenerativeDefense,
                                                GenerativeDefenseConfig, plain_model)
from poisonlab.defenses.repair_base import tuning_field
from poisonlab.models import LoadedModel
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime
from poisonlab.training.causal_lm import train_causal_lm
from poisonlab.training.prompt_format import PromptFormatter
from poisonlab.training.trainer import TrainingConfig
from poisonlab.tuning import TUNING_STRATEGIES


class CleanFinetuneConfig(GenerativeDefenseConfig):
    tuning: component_field(TUNING_STRATEGIES) = tuning_field(
        {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0,
         "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                            "down_proj"]},
        "PEFT strategy the defender trains on the suspect, {name: <strategy>, <field>: <value>}")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=2, batch_size=4, learning_rate=5e-4,
                                               max_length=256, warmup_ratio=0.0),
        description="training settings of the clean fine-tuning")
    clean_size: int | None = Field(None, ge=1, description="clean rows the defender trains on; "
                                                           "null: every clean training row")


@GENERATIVE_DEFENSES.register("finetune", CleanFinetuneConfig)
class CleanFinetune(GenerativeDefense):
    """Clean fine-tuning (as in Liu et al. 2018): a fresh PEFT module on clean instructions."""

    config: CleanFinetuneConfig
    stage = "weights"
    conformance = {"training": {"epochs": 4, "batch_size": 8, "learning_rate": 5e-3,
                                "max_length": 64}}

    def repair(self, model: torch.nn.Module, formatter: PromptFormatter,
               clean_train: Sequence[InstructionExample], *, progress: bool = False,
               runtime: Runtime | None = None) -> torch.nn.Module:
        c = self.config
        rows = list(clean_train)[:c.clean_size]
        strategy = c.tuning.build()
        torch.manual_seed(c.seed)
        tuned = strategy.apply(LoadedModel(plain_model(model), formatter.tokenizer, "causal",
                                           "suspect"))
        if runtime is not None:
            tuned = runtime.place(tuned)
        train_causal_lm(tuned, formatter, rows, c.training, progress=progress,
                        description="clean finetune", runtime=runtime)
        return tuned.eval()
