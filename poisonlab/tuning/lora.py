"""LoRA: trainable low-rank updates W + (alpha/r)·B·A on chosen projections, base weights frozen.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685).
Implemented with peft's LoRA tuner; a classifier's task head trains in full (peft's SEQ_CLS
modules_to_save); a causal language model (instruction tuning) is wrapped as peft's CAUSAL_LM,
its vocabulary head frozen.
Default targets are peft's per-architecture ones (BERT: query/value, Llama: q_proj/v_proj), as in
the paper's W_q/W_v setting."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy
from poisonlab.tuning.peft_wrap import peft_classifier, peft_task_type


class LoraConfig(StrictConfig):
    r: int = Field(8, ge=1, description="rank of the update B·A")
    alpha: float = Field(16, gt=0, description="scaling numerator: the update is scaled by alpha/r")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA branch input")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; null = per architecture "
                          "(BERT: query, value; Llama: q_proj, v_proj)")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases train")
    seed: int = Field(0, description="seeds the initialisation of A (B starts at zero)")


@TUNING_STRATEGIES.register("lora", LoraConfig)
class LoraTuning(TuningStrategy):
    """LoRA (Hu et al. 2021): low-rank updates on attention projections, via peft."""

    config: LoraConfig
    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        from peft import LoraConfig as PeftLoraConfig
        c = self.config
        return peft_classifier(loaded.model, PeftLoraConfig(
            task_type=peft_task_type(loaded.model), r=c.r, lora_alpha=c.alpha,
            lora_dropout=c.dropout, target_modules=c.target_modules, bias=c.bias), c.seed)
