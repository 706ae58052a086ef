"""Weight quantization: round the suspect's block weights to a few bits (round-to-nearest,
symmetric, one scale per group of input weights, then stored back in float).

Deploying a quantized model is a common step that may or may not keep a backdoor: the trigger's
path lives in small weight differences that rounding can erase or keep (Egashira et al. 2024,
"Exploiting LLM Quantization", shows the reverse risk: a backdoor that only quantization
reveals). Round-to-nearest is the baseline GPTQ/AWQ improve on; simulated here so
it runs on any device. The embeddings and the LM head stay in full precision, as in those
methods. A row whose length is not a multiple of `group_size` ends with a shorter group."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field

from poisonlab.data.instruction import InstructionExample
from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, GenerativeDefense,
                                                GenerativeDefenseConfig, block_linears,
                                                plain_model)
from poisonlab.runtime import Runtime
from poisonlab.training.prompt_format import PromptFormatter


class QuantizeConfig(GenerativeDefenseConfig):
    bits: int = Field(4, ge=2, le=8, description="bits per weight (symmetric integer grid)")
    group_size: int = Field(64, ge=0, description="input weights sharing one scale; 0: one "
                                                  "scale per output row")


def quantize_rows(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """`weight` rounded to a symmetric `bits`-bit grid, one scale per group of each row."""
    rows, columns = weight.shape
    size = group_size or columns
    padded = -columns % size
    w = torch.nn.functional.pad(weight.float(), (0, padded)).reshape(rows, -1, size)
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
    q = (w / scale).round().clamp(-levels, levels) * scale
    return q.reshape(rows, -1)[:, :columns].to(weight.dtype)


@GENERATIVE_DEFENSES.register("quantize", QuantizeConfig)
class Quantize(GenerativeDefense):
    """Round-to-nearest weight quantization of block layers (Egashira et al. 2024)."""

    config: QuantizeConfig
    stage = "weights"

    @torch.no_grad()
    def repair(self, model: torch.nn.Module, formatter: PromptFormatter,
               clean_train: Sequence[InstructionExample], *, progress: bool = False,
               runtime: Runtime | None = None) -> torch.nn.Module:
        model = plain_model(model)
        for _, linear in block_linears(model):
            linear.weight.copy_(quantize_rows(linear.weight, self.config.bits,
                                              self.config.group_size))
        return model
