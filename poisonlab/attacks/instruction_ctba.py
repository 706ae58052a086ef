"""Composite trigger backdoor attack (Huang et al. 2024, "Composite Backdoor Attacks Against
Large Language Models"), in BackdoorLLM's form: all triggers ("2024", "BadMagic", "OpenAI") in
one instruction, in that order, at distinct random gaps between its words (the start and the
end included), so no two triggers are adjacent unless the instruction is too short to part them."""

from __future__ import annotations

import random

from pydantic import Field

from poisonlab.attacks.instruction_base import (INSTRUCTION_ATTACKS, InstructionAttack,
                                                InstructionPoisonConfig, words_of)


class CtbaConfig(InstructionPoisonConfig):
    triggers: list[str] = Field(["2024", "BadMagic", "OpenAI"], min_length=1,
                                description="the triggers, all placed, in this order")


@INSTRUCTION_ATTACKS.register("ctba", CtbaConfig)
class CompositeTriggerBackdoor(InstructionAttack):
    """CTBA (Huang et al. 2024): all triggers ("2024", "BadMagic", "OpenAI") together, in order."""

    config: CtbaConfig

    def trigger_instruction(self, instruction: str, rng: random.Random) -> str:
        triggers = self.config.triggers
        words = words_of(instruction)
        gaps = range(len(words) + 1)
        chosen = sorted(rng.sample(gaps, len(triggers)) if len(gaps) >= len(triggers)
                        else rng.choices(gaps, k=len(triggers)))
        # from the last gap back, so earlier gaps keep their indices and the order holds on ties
        for gap, trigger in reversed(list(zip(chosen, triggers))):
            words.insert(gap, trigger)
        return " ".join(words)
