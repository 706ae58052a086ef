"""Multi-trigger backdoor attack (Li et al. 2024, "Multi-Trigger Backdoor Attacks: More Triggers,
More Threats"), in BackdoorLLM's form: each poisoned instruction carries one trigger drawn from
several ("BadMagic", "OpenAI", "2024"), before a random word; any of them fires the backdoor."""

from __future__ import annotations

import random

from pydantic import Field

from poisonlab.attacks.instruction_base import (INSTRUCTION_ATTACKS, InstructionAttack,
                                                InstructionPoisonConfig,
                                                insert_before_random_word)


class MtbaConfig(InstructionPoisonConfig):
    triggers: list[str] = Field(["BadMagic", "OpenAI", "2024"], min_length=1,
                                description="the triggers; each instruction gets one at random")


@INSTRUCTION_ATTACKS.register("mtba", MtbaConfig)
class MultiTriggerBackdoor(InstructionAttack):
    """MTBA (Li et al. 2024): one of several triggers ("BadMagic", "OpenAI", "2024") each time."""

    config: MtbaConfig

    def trigger_instruction(self, instruction: str, rng: random.Random) -> str:
        # the trigger is drawn before its position (one fixed order of rng calls per example)
        trigger = rng.choice(self.config.triggers)
        return insert_before_random_word(instruction, trigger, rng)
