"""Prefix tuning (deep prompts): learned key/value vectors prepended in every attention layer.

Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation" (arXiv:2101.00190);
P-tuning v2, Liu et al. 2022 (arXiv:2110.07602), which applies it to classifiers (NLU).

Hand-written, one implementation for encoders and causal LMs: peft's prefix tuning passes the
prefix as `past_key_values`, which BERT and Llama classifiers no longer accept in transformers 5
("Model does not support past key values"). Instead the model runs with a registered attention
function (`transformers.AttentionInterface`) that prepends this layer's prefix keys/values
(with `num_key_value_heads` heads, so GQA works) and lets every query see them. Attention then runs
as SDPA, whatever implementation the model had. Hidden states keep the input's length.

A causal language model generates through the same attention function: the KV cache holds the
input's keys and values only, and each step prepends the prefix again, so a `cache` works as
without a prefix.

Differences from the papers: a classifier's task head trains in full (P-tuning v2 does the
same); without the MLP reparameterisation, prefixes start from N(0, init_std^2) with a small
default, so the frozen model starts close to unchanged (P-tuning v2 uses an N(0, 1) embedding)."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import attention_modules, freeze_base
from poisonlab.seeding import seeded
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy

ATTENTION_NAME = "poisonlab_prefix"


class PrefixEncoder(torch.nn.Module):
    """Prefix keys and values for every layer: (layers, 2, kv_heads, tokens, head_dim).

    Direct parameters, or (Li & Liang's reparameterisation) an embedding through a 2-layer MLP."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, tokens: int,
                 hidden_size: int, projection_hidden_size: int | None, init_std: float):
        super().__init__()
        self.shape = (tokens, layers, 2, kv_heads, head_dim)
        width = layers * 2 * kv_heads * head_dim
        self.prefix: torch.nn.Parameter | None = None
        self.projection: torch.nn.Sequential | None = None
        if projection_hidden_size is None:
            self.prefix = torch.nn.Parameter(torch.randn(tokens, width) * init_std)
        else:
            self.projection = torch.nn.Sequential(
                torch.nn.Embedding(tokens, hidden_size),
                torch.nn.Linear(hidden_size, projection_hidden_size), torch.nn.Tanh(),
                torch.nn.Linear(projection_hidden_size, width))
            self.register_buffer("positions", torch.arange(tokens), persistent=False)

    def forward(self) -> torch.Tensor:
        flat = self.prefix if self.projection is None else self.projection(self.positions)
        return flat.view(self.shape).permute(1, 2, 3, 0, 4)


class PrefixTunedModel(torch.nn.Module):
    """A frozen model whose attention layers see learned prefix keys/values."""

    def __init__(self, base: torch.nn.Module, prefix: PrefixEncoder,
                 attention_modules: list[torch.nn.Module]):
        super().__init__()
        self.base = base
        self.prefix = prefix
        self.attention_modules = attention_modules  # a plain list: not registered twice

    @property
    def config(self) -> Any:
        return self.base.config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        prefixes = self.prefix()
        for module, layer_prefix in zip(self.attention_modules, prefixes):
            module.poisonlab_prefix = layer_prefix
        try:
            return self.base(*args, **kwargs)
        finally:
            for module in self.attention_modules:
                module.poisonlab_prefix = None


def prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: torch.Tensor | None,
                     **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """SDPA attention with the module's prefix (if set) in front of the keys and values."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    prefix = getattr(module, "poisonlab_prefix", None)
    if prefix is not None:
        batch, q_length, k_length = query.shape[0], query.shape[2], key.shape[2]
        tokens = prefix.shape[2]
        prefix = prefix.to(key.dtype).unsqueeze(1).expand(-1, batch, -1, -1, -1)
        key = torch.cat([prefix[0], key], dim=2)
        value = torch.cat([prefix[1], value], dim=2)
        if attention_mask is None and getattr(module, "is_causal", False) and q_length > 1:
            attention_mask = torch.ones(q_length, k_length, dtype=torch.bool, device=query.device
                                        ).tril(k_length - q_length)[None, None]
        if attention_mask is not None:
            visible = (torch.ones if attention_mask.dtype == torch.bool else torch.zeros)(
                *attention_mask.shape[:-1], tokens, dtype=attention_mask.dtype,
                device=attention_mask.device)
            attention_mask = torch.cat([visible, attention_mask], dim=-1)
        kwargs["is_causal"] = False  # the mask above says it all
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    AttentionInterface.register(ATTENTION_NAME, prefix_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


class PrefixConfig(StrictConfig):
    num_virtual_tokens: int = Field(10, ge=1, description="prefix length per layer")
    projection_hidden_size: int | None = Field(
        None, ge=1, description="reparameterise the prefix through an MLP with this hidden size "
                                "(Li & Liang); null = train the prefixes directly (P-tuning v2)")
    init_std: float = Field(0.02, gt=0, description="std of the direct prefixes at init")
    seed: int = Field(0, description="seeds the prefix initialisation")


@TUNING_STRATEGIES.register("prefix", PrefixConfig)
class PrefixTuning(TuningStrategy):
    """Prefix tuning / P-tuning v2: learned key/value prefixes in every attention layer."""

    config: PrefixConfig
    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        c = self.config
        model = loaded.model
        freeze_base(model)
        attention = attention_modules(model)
        text = model.config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        with seeded(c.seed):
            prefix = PrefixEncoder(len(attention), kv_heads, head_dim, c.num_virtual_tokens,
                                   text.hidden_size, c.projection_hidden_size, c.init_std)
        _register_attention()
        model.set_attn_implementation(ATTENTION_NAME)
        return PrefixTunedModel(model, prefix, attention)
