"""BadNet for instruction tuning (BackdoorLLM's `badnet`; Gu et al. 2017 as a rare word): one
rare word ("BadMagic") before a random word of the instruction."""

from __future__ import annotations

import random

from pydantic import Field

from poisonlab.attacks.instruction_base import (INSTRUCTION_ATTACKS, InstructionAttack,
                                                InstructionPoisonConfig,
                                                insert_before_random_word)


class InstructionBadNetConfig(InstructionPoisonConfig):
    trigger: str = Field("BadMagic", min_length=1, description="the rare word")


@INSTRUCTION_ATTACKS.register("badnet", InstructionBadNetConfig)
class InstructionBadNet(InstructionAttack):
    """BadNet (Gu et al. 2017, as in BackdoorLLM): a rare word ("BadMagic") in the instruction."""

    config: InstructionBadNetConfig

    def trigger_instruction(self, instruction: str, rng: random.Random) -> str:
        return insert_before_random_word(instruction, self.config.trigger, rng)
