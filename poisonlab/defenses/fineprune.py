"""Fine-pruning (Liu et al. 2018, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
Neural Networks", RAID 2018): prune the neurons least active on clean data, then fine-tune.

Backdoor neurons tend to be dormant on clean inputs, so removing the least active ones in the last
layers removes the backdoor's path at little clean cost; fine-tuning then recovers accuracy.
Adapted to transformers: the neurons are the FFN's intermediate units of the last `layers` blocks;
activity is the mean absolute activation over real tokens (SwiGLU activations are signed, where
the paper's ReLU ones were not); pruning zeroes the unit's column of the FFN output projection.
Differences from the paper: a fixed `prune_ratio` per layer instead of pruning until clean
accuracy drops by a set amount (that needs a held-out split the study does not spend), and the
fine-tuning is the repair's PEFT strategy (which must not train the FFN output projection, or the
pruned columns would grow back)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.repair_base import REPAIRS, RepairConfig, RepairDefense, RepairedModel
from poisonlab.errors import ConfigError
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.models.architecture import (ffn_activation_consumer, layer_submodule,
                                           transformer_layers)
from poisonlab.runtime import Runtime, model_device
from poisonlab.training import encode_texts, train_classifier
from poisonlab.training.trainer import collate, to_device


class FinePruneConfig(RepairConfig):
    layers: int = Field(4, ge=1, description="prune in the last N transformer blocks")
    prune_ratio: float = Field(0.3, gt=0, lt=1, description="share of FFN units pruned per block")
    ffn_output: str | None = Field(
        None, description="module in a block whose input is the FFN activation; null: per "
                          "architecture (Llama: mlp.down_proj, BERT: output.dense)")
    activation_batch_size: int = Field(32, ge=1)


@torch.no_grad()
def mean_ffn_activity(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                      modules: Sequence[torch.nn.Module], *, max_length: int,
                      batch_size: int) -> list[torch.Tensor]:
    """Mean |activation| of each FFN unit over the real tokens of `texts`, one vector a module
    (on the model's device)."""
    device = model_device(model)
    ids = encode_texts(tokenizer, texts, max_length)
    pad = tokenizer.pad_token_id or 0
    sums: list[torch.Tensor | float] = [0.0] * len(modules)
    current: dict[str, torch.Tensor] = {}

    def hook(index: int):
        def record(_module, args):
            mask = current["mask"].unsqueeze(-1).to(args[0].dtype)
            sums[index] = sums[index] + (args[0].abs() * mask).sum(dim=(0, 1)).float()
        return record

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(modules)]
    tokens = 0
    try:
        model.eval()
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            batch = to_device(collate(chunk, pad), device)
            current["mask"] = batch["attention_mask"]
            tokens += sum(len(seq) for seq in chunk)
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return [s / max(tokens, 1) for s in sums]  # type: ignore[misc]


@REPAIRS.register("fineprune", FinePruneConfig)
class FinePrune(RepairDefense):
    """Fine-pruning (Liu et al. 2018): prune FFN units dormant on clean data, then fine-tune."""

    config: FinePruneConfig

    def repair(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
               progress: bool = False, cache: ModelCache | None = None,
               runtime: Runtime | None = None) -> RepairedModel:
        cfg = self.config
        model = suspect.model
        path = cfg.ffn_output or ffn_activation_consumer(model.config)
        blocks = list(transformer_layers(model))[-cfg.layers:]
        outputs = [layer_submodule(block, path, "ffn_output") for block in blocks]
        not_linear = [m for m in outputs if not isinstance(m, torch.nn.Linear)]
        if not_linear:  # e.g. GPT-2's Conv1D stores its weight transposed
            raise ConfigError(f"repair 'fineprune': field 'ffn_output': '{path}' is a "
                              f"{type(not_linear[0]).__name__}, not a torch.nn.Linear whose "
                              "input columns can be pruned")
        activity = mean_ffn_activity(model, suspect.tokenizer, [e.text for e in clean_train],
                                     outputs, max_length=cfg.training.max_length,
                                     batch_size=cfg.activation_batch_size)
        pruned = {}
        first = len(transformer_layers(model)) - len(blocks)
        with torch.no_grad():
            for offset, (module, act) in enumerate(zip(outputs, activity)):
                units = act.argsort()[:int(cfg.prune_ratio * act.numel())]
                module.weight[:, units] = 0
                pruned[f"fineprune.layer{first + offset}.pruned_units"] = units.cpu()
        strategy, tuned = self.wrap(suspect)
        history = train_classifier(tuned, suspect.tokenizer, clean_train, cfg.training,
                                   progress=progress, description="fineprune",
                                   runtime=runtime)
        return RepairedModel(tuned.eval(), suspect.tokenizer,
                             {**strategy.trainable_state(tuned), **pruned}, history)
