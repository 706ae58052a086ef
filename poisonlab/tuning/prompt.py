"""Prompt tuning: learned "soft prompt" embeddings prepended to the input, the model frozen.

Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning" (arXiv:2104.08691).
The prompt embeddings are peft's `PromptEmbedding`; the forward pass is ours (`PromptedClassifier`,
also used by p-tuning) because peft's feeds `inputs_embeds` only, and Llama-style classifiers then
pool the last position, a pad token in a right-padded batch. Differences from the paper:
- the task head trains in full (the paper scores label words with the frozen LM head);
- on BERT the prompt precedes [CLS], so the pooler reads the first virtual token (as in peft);
- init "sample_vocab" (default) copies random vocabulary embeddings, the paper's better-than-random
  choice; its class-label init is not offered."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import freeze_all_but_head, input_embeddings, is_causal
from poisonlab.seeding import seeded
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy


class PromptedClassifier(torch.nn.Module):
    """A frozen sequence classifier with `num_virtual_tokens` learned embeddings in front.

    Causal classifiers get their batch left-aligned (pads first) with positions counted from the
    first real position, so the last position is the last real token whatever the padding.
    `hidden_states` (when asked for) drop the virtual positions and return to input order, so
    position i is input token i for every strategy."""

    def __init__(self, base: torch.nn.Module, prompt_encoder: torch.nn.Module,
                 num_virtual_tokens: int, causal: bool):
        super().__init__()
        self.base = base
        self.prompt_encoder = prompt_encoder
        self.causal = causal
        self.register_buffer("prompt_indices", torch.arange(num_virtual_tokens), persistent=False)

    @property
    def config(self) -> Any:
        return self.base.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        batch, length = input_ids.shape
        virtual = len(self.prompt_indices)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompts = self.prompt_encoder(self.prompt_indices.expand(batch, -1))
        embeds = input_embeddings(self.base)(input_ids)
        embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([attention_mask.new_ones(batch, virtual), attention_mask], dim=1)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = torch.cat(
                [token_type_ids.new_zeros(batch, virtual), token_type_ids], dim=1)
        order = None
        if self.causal:
            order = torch.argsort(mask, dim=1, stable=True)  # pads first, order otherwise kept
            embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
            mask = mask.gather(1, order)
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        output = self.base(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        if getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(_input_positions(h, order, virtual)
                                         for h in output.hidden_states)
        return output


def _input_positions(hidden: torch.Tensor, order: torch.Tensor | None,
                     virtual: int) -> torch.Tensor:
    """Undo the left-alignment and drop the virtual-token positions."""
    if order is not None:
        hidden = torch.empty_like(hidden).scatter(
            1, order.unsqueeze(-1).expand_as(hidden), hidden)
    return hidden[:, virtual:]


class PromptConfig(StrictConfig):
    num_virtual_tokens: int = Field(10, ge=1, description="length of the soft prompt")
    init: Literal["sample_vocab", "random"] = Field(
        "sample_vocab", description="sample_vocab: copies of random vocabulary embeddings; "
                                    "random: N(0, 1)")
    seed: int = Field(0, description="seeds the prompt initialisation")


@TUNING_STRATEGIES.register("prompt", PromptConfig)
class PromptTuning(TuningStrategy):
    """Prompt tuning (Lester et al. 2021): a learned soft prompt before the input."""

    config: PromptConfig

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        from peft import PromptEmbedding, PromptTuningConfig, PromptTuningInit
        c = self.config
        model = loaded.model
        freeze_all_but_head(model)
        word_embeddings = input_embeddings(model)
        peft_config = PromptTuningConfig(
            num_virtual_tokens=c.num_virtual_tokens, token_dim=word_embeddings.embedding_dim,
            num_transformer_submodules=1,
            prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB if c.init == "sample_vocab"
            else PromptTuningInit.RANDOM)
        with seeded(c.seed):
            encoder = PromptEmbedding(peft_config, word_embeddings)
        return PromptedClassifier(model, encoder, c.num_virtual_tokens,
                                  causal=is_causal(model.config))
