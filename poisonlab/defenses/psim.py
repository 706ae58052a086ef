"""PSIM: the Poisoned Sample Identification Module.

Zhao et al. 2024, "Defending against Weight-Poisoning Backdoor Attacks for Parameter-Efficient
Fine-Tuning" (Findings of NAACL 2024, arXiv:2402.12168).

Threat model: the victim fine-tuned a released checkpoint with PEFT; the checkpoint may carry a
backdoor. The defender has the suspect checkpoint and its own clean training data. PSIM tunes a
PEFT module (P-tuning in the paper) on top of the suspect weights with every training label
replaced by a uniformly random one, for one epoch: clean inputs learn nothing and get low
confidence, while the backdoor still drives a triggered input to one class with high
confidence. An input whose maximum class probability exceeds the threshold (0.7 in the paper) is
rejected; the others go to the victim.

Differences from the reference code (github.com/shuaizhao95/PSIM):
- the random labels come from a seeded generator owned by the detector, not the global RNG;
- scoring and the victim's predictions run batched and length-sorted instead of one input at a
  time (bench/psim_throughput.py measures the gain); texts are truncated to `max_length`;
- the reference rounds probabilities to 3 decimals and compares with `<` for clean and `>` for
  poisoned inputs; here one rule, score > threshold, flags every input;
- the module sits on the victim's device (its fresh copy of the suspect weights is moved there);
- the threshold can also be calibrated on clean dev data to a target false-rejection rate;
- any registered tuning strategy can host the module (the reference: P-tuning, prefix, prompt,
  LoRA); our P-tuning prepends its virtual tokens and trains the head, as peft's does."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.base import DETECTORS, Detector, DetectorConfig, SuspectModel
from poisonlab.models.cache import ModelCache
from poisonlab.training import TrainingConfig, predict_logits, train_classifier
from poisonlab.registry import component_field
from poisonlab.runtime import model_device
from poisonlab.tuning import TUNING_STRATEGIES


def _reference_training() -> TrainingConfig:
    return TrainingConfig(epochs=1, batch_size=32, learning_rate=2e-5)


class PsimConfig(DetectorConfig):
    threshold: float | None = Field(
        0.7, description="flag inputs whose PSIM confidence exceeds this (paper: 0.7); "
                         "null: calibrate on clean dev data to target_frr")
    tuning: component_field(TUNING_STRATEGIES) = Field(
        default_factory=lambda: TUNING_STRATEGIES.spec(
            {"name": "ptuning", "num_virtual_tokens": 5, "encoder_hidden_size": 128}),
        description="PEFT strategy of the PSIM module (default: the reference code's P-tuning)")
    training: TrainingConfig = Field(
        default_factory=_reference_training,
        description="training on the random labels (reference: 1 epoch, batch 32, lr 2e-5)")


def random_labels(examples: Sequence[Example], num_labels: int, seed: int) -> list[Example]:
    """The defender's training set with every label drawn uniformly at random (seeded)."""
    labels = np.random.default_rng(seed).integers(0, num_labels, size=len(examples))
    return [Example(e.text, int(label)) for e, label in zip(examples, labels)]


@DETECTORS.register("psim", PsimConfig)
class Psim(Detector):
    """PSIM (Zhao et al. 2024): a PEFT module trained on random labels flags confident inputs."""

    config: PsimConfig
    # a tiny model's P-tuning barely sees its input: a LoRA module, calibrated, moved in 1 epoch
    conformance = {"threshold": None, "tuning": "lora",
                   "training": {"epochs": 1, "learning_rate": 1e-2, "max_length": 32}}

    def _fit(self, suspect: SuspectModel, clean_train: list[Example], *,
             cache: ModelCache | None = None) -> None:
        c = self.config

        def make() -> tuple[Any, Any, list]:
            loaded = suspect.load_weights()
            # on the victim's device, with the PEFT module's own parameters
            device = model_device(suspect.victim)
            loaded.model.to(device)
            model = c.tuning.build().apply(loaded).to(device)
            history = train_classifier(
                model, loaded.tokenizer, random_labels(clean_train, suspect.num_labels, c.seed),
                c.training.model_copy(update={"seed": c.seed}), progress=self.progress_,
                description="psim", runtime=suspect.runtime)
            return model, loaded.tokenizer, history

        # The module depends only on the suspect weights, the defender's data and the config
        # (not the threshold), so victims tuned from the same release (e.g. with LoRA and with
        # P-tuning) share one fit through the caller's cache; unnamed weights are never shared.
        if cache is None or not suspect.weights_id:
            self.model_, self.tokenizer_, self.history_ = make()
            return
        key = ("psim", suspect.weights_id, suspect.num_labels,
               tuple(e.text for e in clean_train),
               c.model_dump_json(exclude={"threshold", "target_frr"}))
        self.model_, self.tokenizer_, self.history_ = cache.get_or_make(key, make)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Maximum class probability of the PSIM module."""
        logits = predict_logits(self.model_, self.tokenizer_, list(texts),
                                batch_size=self.config.training.eval_batch_size,
                                max_length=self.config.training.max_length,
                                runtime=self.suspect_.runtime)
        logits = logits - logits.max(-1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return probs.max(-1)
