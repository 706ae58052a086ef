"""Prompt tuning: learned "soft prompt" embeddings prepended to the input, the model frozen.

Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning" (arXiv:2104.08691).
The prompt embeddings are peft's `PromptEmbedding`; the forward pass is ours (`PromptedModel`,
also used by p-tuning): peft's feeds `inputs_embeds` only, so Llama-style classifiers then pool
the last position, a pad token in a right-padded batch; and peft's causal-LM forward drops
`position_ids` (left padding then shifts every position) and prepends the prompt at every call
(only `transformers`' `generate`, through peft's input preparation, skips it once the KV cache
holds it), so poisonlab's generation loop would see it again at every step. Differences from the
paper:
- a classifier's task head trains in full (the paper scores label words with the frozen LM head);
  a causal language model (instruction tuning) trains the prompt only, as in the paper;
- on BERT the prompt precedes [CLS], so the pooler reads the first virtual token (as in peft);
- init "sample_vocab" (default) copies random vocabulary embeddings, the paper's better-than-random
  choice; its class-label init is not offered."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import freeze_base, has_task_head, input_embeddings, is_causal
from poisonlab.seeding import seeded
from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy


class PromptedModel(torch.nn.Module):
    """A frozen model with `num_virtual_tokens` learned embeddings in front of its input.

    A causal classifier gets its batch left-aligned (pads first) with positions counted from the
    first real position, so the last position, which it pools, is the last real token whatever
    the padding. A causal language model keeps the input's order behind the virtual tokens (the
    mask hides pads wherever they are) and positions count from the first virtual token (given
    `position_ids` are shifted by the prompt's length); with a KV cache the prompt goes in with
    the first call and later calls add their tokens only, so batched, left-padded, cached
    generation works as without a prompt. Outputs drop the virtual positions and keep input order:
    `logits` and `hidden_states` position i is input token i, and a tensor `logits_to_keep`
    names input positions."""

    def __init__(self, base: torch.nn.Module, prompt_encoder: torch.nn.Module,
                 num_virtual_tokens: int):
        super().__init__()
        self.base = base
        self.prompt_encoder = prompt_encoder
        self.causal = is_causal(base.config)
        self.language_model = not has_task_head(base)
        self.register_buffer("prompt_indices", torch.arange(num_virtual_tokens), persistent=False)

    @property
    def config(self) -> Any:
        return self.base.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        batch, length = input_ids.shape
        virtual = len(self.prompt_indices)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = input_embeddings(self.base)(input_ids)
        mask = torch.cat([attention_mask.new_ones(batch, virtual), attention_mask], dim=1)
        cache = kwargs.get("cache")
        if cache is not None and cache.get_seq_length() > 0:
            # A later generation step: the virtual tokens are in the cache already.
            kwargs["position_ids"] = (position_ids + virtual if position_ids is not None
                                      else (mask.cumsum(1) - 1)[:, -length:])
            return self.base(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        prompts = self.prompt_encoder(self.prompt_indices.expand(batch, -1))
        embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = torch.cat(
                [token_type_ids.new_zeros(batch, virtual), token_type_ids], dim=1)
        order = None
        if self.causal and not self.language_model:
            order = torch.argsort(mask, dim=1, stable=True)  # pads first, order otherwise kept
            embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
            mask = mask.gather(1, order)
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        elif position_ids is not None:
            kwargs["position_ids"] = torch.cat(
                [self.prompt_indices.expand(batch, -1), position_ids + virtual], dim=1)
        elif self.causal:
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        keep = kwargs.get("logits_to_keep")
        if isinstance(keep, torch.Tensor):
            kwargs["logits_to_keep"] = keep + virtual
        output = self.base(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        if self.language_model and not isinstance(keep, torch.Tensor):
            output.logits = output.logits[:, -length:]  # all, or the last `keep`, of the input's
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
    generates = True

    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        from peft import PromptEmbedding, PromptTuningConfig, PromptTuningInit
        c = self.config
        model = loaded.model
        freeze_base(model)
        word_embeddings = input_embeddings(model)
        peft_config = PromptTuningConfig(
            num_virtual_tokens=c.num_virtual_tokens, token_dim=word_embeddings.embedding_dim,
            num_transformer_submodules=1,
            prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB if c.init == "sample_vocab"
            else PromptTuningInit.RANDOM)
        with seeded(c.seed):
            encoder = PromptEmbedding(peft_config, word_embeddings)
        return PromptedModel(model, encoder, c.num_virtual_tokens)
