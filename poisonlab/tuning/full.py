"""Full-parameter fine-tuning: every weight trains."""

from __future__ import annotations

import torch

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy


class FullConfig(StrictConfig):
    pass


@TUNING_STRATEGIES.register("full", FullConfig)
class FullFineTuning(TuningStrategy):
    """Full-parameter fine-tuning (every weight trains)."""

    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        for parameter in loaded.model.parameters():
            parameter.requires_grad_(True)
        return loaded.model
