"""Unstructured pruning of the suspect's block weights: magnitude or Wanda.

Magnitude pruning zeroes the weights of smallest |W|; Wanda (Sun et al. 2024, "A Simple and
Effective Pruning Approach for Large Language Models", ICLR 2024) zeroes those of smallest
|W_ij| * ||X_j||, where ||X_j|| is the norm of input feature j over calibration tokens, so a
small weight on a feature that is large on real text survives. Both compare weights within each
output row (Wanda's comparison group) and prune `sparsity` of every row of every linear layer in
the transformer blocks, with no retraining. As a backdoor defense, the hope is that the trigger's
path uses weights that matter little on clean text.

Calibration (Wanda): the defender's clean instruction rows, formatted as in training (prompt and
response), `calibration_size` of them; Wanda's paper uses 128 sequences of C4."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from poisonlab.data.instruction import InstructionExample
from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, GenerativeDefense,
                                                GenerativeDefenseConfig, block_linears,
                                                plain_model)
from poisonlab.runtime import Runtime, model_device
from poisonlab.training.prompt_format import PromptFormatter
from poisonlab.training.trainer import _pad_id, collate, to_device


class PruneConfig(GenerativeDefenseConfig):
    method: Literal["magnitude", "wanda"] = Field(
        "wanda", description="weight score: |W| (magnitude) or |W| x input norm (wanda)")
    sparsity: float = Field(0.5, gt=0, lt=1, description="share of each row's weights zeroed")
    calibration_size: int = Field(64, ge=1, description="clean rows whose activations Wanda "
                                                        "measures")
    max_length: int = Field(256, ge=8, description="tokens per calibration row")
    batch_size: int = Field(8, ge=1, description="calibration rows per forward pass")


@torch.no_grad()
def input_norms(model: torch.nn.Module, linears: Sequence[torch.nn.Linear],
                sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int
                ) -> list[torch.Tensor]:
    """||X_j||_2 over the real tokens of `sequences`, per input feature of each linear layer."""
    device = model_device(model)
    sums: list[torch.Tensor | float] = [0.0] * len(linears)
    mask: dict[str, torch.Tensor] = {}

    def hook(index: int):
        def record(_module, args):
            x = args[0].float() * mask["real"].unsqueeze(-1)
            sums[index] = sums[index] + x.pow(2).sum(dim=(0, 1))
        return record

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(linears)]
    try:
        model.eval()
        for start in range(0, len(sequences), batch_size):
            batch = to_device(collate(sequences[start:start + batch_size], pad_id), device)
            mask["real"] = batch["attention_mask"].float()
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return [torch.as_tensor(s).sqrt() for s in sums]


def prune_rows(weight: torch.Tensor, score: torch.Tensor, sparsity: float) -> None:
    """Zero, in place, the `sparsity` share of each row of `weight` with the lowest `score`."""
    count = int(weight.shape[1] * sparsity)
    if count:
        lowest = score.topk(count, dim=1, largest=False).indices
        weight.scatter_(1, lowest, 0.0)


@GENERATIVE_DEFENSES.register("prune", PruneConfig)
class Prune(GenerativeDefense):
    """Magnitude or Wanda (Sun et al. 2024) pruning of every block's linear layers."""

    config: PruneConfig
    stage = "weights"

    @torch.no_grad()
    def repair(self, model: torch.nn.Module, formatter: PromptFormatter,
               clean_train: Sequence[InstructionExample], *, progress: bool = False,
               runtime: Runtime | None = None) -> torch.nn.Module:
        c = self.config
        model = plain_model(model)
        linears = [linear for _, linear in block_linears(model)]
        if c.method == "wanda":
            rows = formatter.encode_training(list(clean_train)[:c.calibration_size],
                                             c.max_length).input_ids
            norms = input_norms(model, linears, rows, _pad_id(formatter.tokenizer),
                                c.batch_size)
        for index, linear in enumerate(linears):
            score = linear.weight.abs().float()
            if c.method == "wanda":
                score = score * norms[index].to(score.device)
            prune_rows(linear.weight, score, c.sparsity)
        return model
