"""Bottleneck adapters: small residual MLPs after each layer's feed-forward (and attention) output.

Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP" (arXiv:1902.00751); the
feed-forward-only placement is Pfeiffer et al. 2021 (AdapterFusion). Hand-written (no maintained
adapter library here): a forward hook on each sublayer's output projection maps h to
h + up(act(down(h))), before the residual connection and layer norm as in Houlsby. `up` starts at
zero, so the model starts unchanged. The adapter is registered as a child of the module it wraps,
so it appears in the model's parameters and state dict under that module's name.

Each adapter acts on one position at a time, so a causal language model generates with it as is
(KV cache and padding included); its vocabulary head stays frozen.

Differences from the paper: a classifier's task head trains in full but layer norms stay frozen
(Houlsby also trains them); feed-forward only by default (`attention: true` gives Houlsby's two
per layer)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import (attention_output, ffn_block_output, freeze_base,
                                           layer_submodule, transformer_layers)
from poisonlab.seeding import seeded
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy

ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}


class BottleneckAdapter(torch.nn.Module):
    """h -> h + up(act(down(h))), used as a forward hook on the module whose output it adapts."""

    def __init__(self, width: int, bottleneck: int, activation: str, dtype: torch.dtype):
        super().__init__()
        self.down = torch.nn.Linear(width, bottleneck, dtype=dtype)
        self.act = ACTIVATIONS[activation]()
        self.up = torch.nn.Linear(bottleneck, width, dtype=dtype)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))

    def hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        # A bound method (not a closure), so deepcopy of the model re-binds it to the copy.
        return self(output)


class AdapterConfig(StrictConfig):
    bottleneck_size: int = Field(64, ge=1, description="adapter hidden (bottleneck) size")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="nonlinearity")
    attention: bool = Field(False, description="also adapt each attention output (Houlsby); "
                                               "false = feed-forward only (Pfeiffer)")
    ffn_module: str | None = Field(
        None, description="feed-forward output module inside each layer; null = per architecture "
                          "(BERT: output.dense, Llama: mlp)")
    attention_module: str | None = Field(
        None, description="attention output module inside each layer; null = per architecture "
                          "(BERT: attention.output.dense, Llama: self_attn.o_proj)")
    seed: int = Field(0, description="seeds the down-projection initialisation")


@TUNING_STRATEGIES.register("adapter", AdapterConfig)
class AdapterTuning(TuningStrategy):
    """Bottleneck adapters (Houlsby et al. 2019) after each layer's feed-forward output."""

    config: AdapterConfig
    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        c = self.config
        model = loaded.model
        freeze_base(model)
        targets = [("ffn_module", c.ffn_module or ffn_block_output(model.config))]
        if c.attention:
            targets.append(("attention_module",
                            c.attention_module or attention_output(model.config)))
        width = model.config.get_text_config().hidden_size
        dtype = next(model.parameters()).dtype
        with seeded(c.seed):
            for layer in transformer_layers(model):
                for field, path in targets:
                    module = layer_submodule(layer, path, field)
                    adapter = BottleneckAdapter(width, c.bottleneck_size, c.activation, dtype)
                    module.add_module("adapter", adapter)
                    module.register_forward_hook(adapter.hook)
        return model
