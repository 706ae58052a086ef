"""Text written by a causal LM for attacks whose trigger is generated (TrojanLM's trigger
sentences, StyleBkd's paraphrases). Prompts go through the tokenizer's chat template when it has
one (instruct models), are generated in batches (left padding, one prefill per batch: see
`poisonlab.training.generation`) and sampled from generators seeded by the generation config, so
a seed gives the same text whatever ran before. Only the first line of each answer is kept.

Because the same prompts with the same settings give the same text, a process loads a writer
once and writes each batch of prompts once: the cells of a study that poison the same examples
(a model trained with and without a training-set defense, a detector's poisoned test set) reuse
it instead of generating it again."""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch

from poisonlab.models import LoadedModel, load_causal_lm
from poisonlab.training.generation import GenerationConfig, generate

# (LM, prompts, generation settings) -> answers, for the most recent calls
_WRITTEN: OrderedDict[tuple[str, tuple[str, ...], str], list[str]] = OrderedDict()
WRITTEN_KEPT = 32


@functools.lru_cache(maxsize=1)
def load_writer(name: str) -> LoadedModel:
    """The causal LM `name` (safetensors only, no remote code), on the GPU when there is one;
    the last one loaded is kept (it is only read)."""
    lm = load_causal_lm(name)
    if torch.cuda.is_available():
        lm.model.to("cuda")
    return lm


def write(lm: LoadedModel, prompts: list[str], config: GenerationConfig) -> list[str]:
    """The first line of the LM's answer to each prompt, stripped ("" when it wrote nothing)."""
    key = (lm.name, tuple(prompts), config.model_dump_json())
    if key not in _WRITTEN:
        _WRITTEN[key] = _generate_first_lines(lm, prompts, config)
        while len(_WRITTEN) > WRITTEN_KEPT:
            _WRITTEN.popitem(last=False)
    _WRITTEN.move_to_end(key)
    return list(_WRITTEN[key])


def _generate_first_lines(lm: LoadedModel, prompts: list[str],
                          config: GenerationConfig) -> list[str]:
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompts)["input_ids"]
    answers = generate(lm.model, tokenizer, ids, config, stop_ids=[tokenizer.eos_token_id])
    return [(answer.strip().splitlines() or [""])[0].strip() for answer in answers]
