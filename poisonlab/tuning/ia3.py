"""IA3: learned vectors that rescale keys, values and feed-forward activations, base frozen.

Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning" (arXiv:2205.05638). Implemented with peft's IA3 tuner (vectors start at one, so the
model starts unchanged); a classifier's task head trains in full (peft's SEQ_CLS); a causal
language model is wrapped as peft's CAUSAL_LM, its vocabulary head frozen, and generates with a KV
cache as is (the rescaled keys and values are what the cache holds). Default targets are peft's
per architecture (BERT: key, value, output.dense; Llama: k_proj, v_proj, down_proj)."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy
from poisonlab.tuning.peft_wrap import peft_classifier, peft_task_type


class Ia3Config(StrictConfig):
    target_modules: list[str] | None = Field(
        None, description="modules whose activations are rescaled; null = per architecture "
                          "(BERT: key, value, output.dense; Llama: k_proj, v_proj, down_proj)")
    feedforward_modules: list[str] | None = Field(
        None, description="subset of target_modules that are feed-forward layers (scaled on "
                          "their input, not output); null = per architecture")

    @model_validator(mode="after")
    def _both_or_neither(self) -> "Ia3Config":
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError("set both target_modules and feedforward_modules, or neither")
        return self


@TUNING_STRATEGIES.register("ia3", Ia3Config)
class Ia3Tuning(TuningStrategy):
    """IA3 (Liu et al. 2022): learned rescaling of keys, values and FFN activations, via peft."""

    config: Ia3Config
    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        from peft import IA3Config
        c = self.config
        # IA3 vectors start at one: nothing random to seed.
        return peft_classifier(loaded.model, IA3Config(
            task_type=peft_task_type(loaded.model), target_modules=c.target_modules,
            feedforward_modules=c.feedforward_modules), seed=0)
