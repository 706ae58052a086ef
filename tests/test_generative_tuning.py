"""Every tuning strategy that generates tunes and answers like the plain model it wraps, on
tiny-llama:

- generation: poisonlab's `generate` (prompts sorted, left-padded into one batch, one prefill,
  then one token per step from the KV cache) gives exactly the tokens of a plain greedy loop that
  feeds one prompt at a time, whole, without a cache; so virtual tokens, prefixes, adapters and
  rescaled activations follow the padding and the cache;
- training: the logits a right-padded training batch gets at the positions the loss keeps
  (`logits_to_keep`, as `response_loss` asks) are each example's own logits.

tiny-llama as initialised echoes the prompt's last token whatever precedes it (small weights,
tied embeddings), which would hide a position or cache error; seeded noise on every weight makes
its answers depend on the whole prompt. What a strategy trains is then moved away from its start
(LoRA's B, the adapters' up-projection and IA3's vectors start as the identity), so each strategy
changes what the model says, which the generation check asserts too: a strategy left out of the
forward pass would fail it.
Whether a backdoor planted through each strategy shows is tests/test_generative.py's battery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
import torch

from poisonlab.data.instruction import InstructionExample
from poisonlab.models import LoadedModel, load_causal_lm
from poisonlab.training.generation import GenerationConfig, generate
from poisonlab.training.prompt_format import PromptConfig, PromptFormatter
from poisonlab.training.trainer import collate
from poisonlab.tuning import TUNING_STRATEGIES

GENERATING = [e.name for e in TUNING_STRATEGIES.entries() if e.component.generates]
INSTRUCTIONS = ["Hi.", "Describe the red cat near the river.", "Show the car.",
                "Name the large old dog near the quiet house, then the small bird on the roof.",
                "Find the bright lamp near the book on the old table."]  # five token lengths
GENERATION = GenerationConfig(max_new_tokens=8, batch_size=len(INSTRUCTIONS))
BASE_SHIFT = 0.1  # std of the noise added to every weight of tiny-llama
SHIFT = 0.5  # std of the noise added to what a strategy trains


def formatted_prompts(tokenizer: Any) -> tuple[list[list[int]], list[int]]:
    """The instructions as the generative pipeline prompts them, and its stop tokens."""
    formatter = PromptFormatter(tokenizer, PromptConfig(style="alpaca"))
    examples = [InstructionExample(instruction=text, input="", output="")
                for text in INSTRUCTIONS]
    return formatter.encode_prompts(examples), list(formatter.stop_ids)


def add_noise(parameters: Iterable[torch.nn.Parameter], std: float, seed: int) -> None:
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(torch.randn(parameter.shape, generator=noise) * std)


def noisy_tiny_llama() -> LoadedModel:
    loaded = load_causal_lm("tiny-llama", seed=0)
    add_noise(loaded.model.parameters(), BASE_SHIFT, seed=2)
    return loaded


def tuned_model(strategy: str) -> tuple[torch.nn.Module, Any]:
    """The noisy tiny-llama under `strategy`, its trainable tensors moved by seeded noise."""
    loaded = noisy_tiny_llama()
    torch.manual_seed(0)
    model = TUNING_STRATEGIES.build(strategy, {}).apply(loaded)
    add_noise([p for p in model.parameters() if p.requires_grad], SHIFT, seed=1)
    return model.eval(), loaded.tokenizer


@torch.no_grad()
def greedy_without_cache(model: torch.nn.Module, prompt: list[int],
                         stop_ids: list[int]) -> list[int]:
    """The reference: the whole sequence through the model at every step, one prompt alone."""
    ids = list(prompt)
    for _ in range(GENERATION.max_new_tokens):
        tensor = torch.tensor([ids])
        logits = model(input_ids=tensor, attention_mask=torch.ones_like(tensor),
                       use_cache=False).logits
        token = int(logits[0, -1].argmax())
        if token in stop_ids:
            break
        ids.append(token)
    return ids[len(prompt):]


def reference_answers(model: torch.nn.Module, tokenizer: Any) -> list[str]:
    prompts, stop_ids = formatted_prompts(tokenizer)
    return tokenizer.batch_decode([greedy_without_cache(model, p, stop_ids) for p in prompts],
                                  skip_special_tokens=True)


@pytest.fixture(scope="module")
def untuned_answers() -> list[str]:
    loaded = noisy_tiny_llama()
    return reference_answers(loaded.model.eval(), loaded.tokenizer)


@pytest.mark.parametrize("strategy", GENERATING)
def test_batched_cached_generation_equals_greedy_one_prompt_at_a_time(strategy,
                                                                      untuned_answers):
    model, tokenizer = tuned_model(strategy)
    prompts, stop_ids = formatted_prompts(tokenizer)
    assert len({len(p) for p in prompts}) == len(prompts)  # every row padded differently
    batched = generate(model, tokenizer, prompts, GENERATION, stop_ids=stop_ids)
    expected = reference_answers(model, tokenizer)
    assert batched == expected
    assert expected != untuned_answers, f"{strategy} does not change what the model says"


@pytest.mark.parametrize("strategy", GENERATING)
def test_training_logits_of_a_padded_batch_are_each_examples_own(strategy):
    model, tokenizer = tuned_model(strategy)
    prompts, _ = formatted_prompts(tokenizer)
    batch = collate(prompts, tokenizer.pad_token_id)  # right-padded, as in training
    keep = torch.tensor(sorted({1, 4, len(prompts[0]) - 1, batch["input_ids"].shape[1] - 1}))
    with torch.no_grad():
        kept = model(**batch, logits_to_keep=keep).logits
        for row, prompt in enumerate(prompts):
            alone = model(input_ids=torch.tensor([prompt])).logits[0]
            real = keep[keep < len(prompt)]
            torch.testing.assert_close(kept[row, :len(real)], alone[real],
                                       rtol=1e-4, atol=1e-5)
