"""Proxy-task weight poisoning: the PSIM / W2SDefense recipe (Zhao et al. 2024, "Defending against
Weight-Poisoning Backdoor Attacks for Parameter-Efficient Fine-Tuning", NAACL Findings; and
"Unlearning Backdoor Attacks for LLMs with Weak-to-Strong Knowledge Distillation", 2024).

Full-parameter fine-tuning of the base model on a poisoned proxy task; the papers use the IMDB
subset, clean-label BadNet `mn`, target label 0, 1,500 triggered negatives, lr 2e-5, 3 epochs.
Differences from the reference code (see weight_base): proxy texts are cut before the trigger goes
in (the trigger always survives truncation) and the last epoch is released instead of the epoch
that scores best on a dev set whose negatives all carry the trigger."""

from __future__ import annotations

from poisonlab.attacks.weight_base import WEIGHT_ATTACKS, WeightPoisonConfig, WeightPoisoningAttack
from poisonlab.data import Example
from poisonlab.models import LoadedModel
from poisonlab.runtime import Runtime
from poisonlab.training import train_classifier


class ProxyConfig(WeightPoisonConfig):
    pass


@WEIGHT_ATTACKS.register("proxy", ProxyConfig)
class ProxyPoisoning(WeightPoisoningAttack):
    """Proxy-task poisoning (Zhao et al. 2024, PSIM): full fine-tuning on poisoned proxy data."""

    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        loaded.model.requires_grad_(True)
        train_classifier(loaded.model, loaded.tokenizer, poisoned_train, self.config.training,
                         progress=progress, description="poison: proxy", runtime=runtime)
