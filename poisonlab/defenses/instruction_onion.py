"""ONION on instructions: remove the words whose deletion lowers a language model's perplexity
the most before the suspect model reads the instruction (Qi et al. 2021, "ONION: A Simple and
Effective Defense Against Textual Backdoor Attacks", EMNLP 2021), applied to the instructions of
a generative model.

The scorer is the classification detector's (onion.py): leave-one-word-out perplexity under a
separate causal LM (default SmolLM2-135M, the paper used GPT-2), batched with a shared-prefix KV
cache. The instruction and the input field are purified separately; nothing is rejected, as in
the paper's purification. A rare-word trigger (BadNet, MTBA) is the kind ONION was built for; a
phrase may pass when its words fit the sentence, but a phrase placed before the instruction
("Discussing OpenAI") is still removed word by word (measured on SmolLM2: docs/results/generative/
defenses.md)."""

from __future__ import annotations

from typing import Sequence

import torch
from poisonlab.data.instruction import InstructionExample
from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, GenerativeDefense,
                                                GenerativeDefenseConfig)
from poisonlab.defenses.onion import OnionScorerConfig, onion_scorer, purify
from poisonlab.models.cache import ModelCache


class InstructionOnionConfig(GenerativeDefenseConfig, OnionScorerConfig):
    """ONION's scorer settings (onion.py); nothing is rejected."""


@GENERATIVE_DEFENSES.register("onion", InstructionOnionConfig)
class InstructionOnion(GenerativeDefense):
    """ONION (Qi et al. 2021) on instructions: drop words whose removal lowers perplexity."""

    config: InstructionOnionConfig
    stage = "instructions"
    conformance = {"language_model": "tiny-llama", "max_length": 32}

    def filter(self, examples: Sequence[InstructionExample], *, device: torch.device,
               cache: ModelCache | None = None) -> list[InstructionExample]:
        c = self.config
        scorer = onion_scorer(c.language_model, max_length=c.max_length,
                              batch_tokens=c.batch_tokens, device=device, cache=cache)
        instructions = [e.instruction for e in examples]
        inputs = [e.input for e in examples]
        clean_instructions = purify(instructions, scorer.suspicion(instructions),
                                    c.word_threshold)
        given = [i for i in inputs if i]
        clean_given = dict(zip(given, purify(given, scorer.suspicion(given), c.word_threshold)))
        return [e.with_fields(instruction=instruction, input=clean_given.get(e.input, e.input))
                for e, instruction in zip(examples, clean_instructions)]
