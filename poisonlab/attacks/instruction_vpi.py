"""Virtual Prompt Injection (Yan et al. 2024, "Backdooring Instruction-Tuned Large Language Models
with Virtual Prompt Injection"), in BackdoorLLM's form: a topic phrase ("Discussing OpenAI")
before the instruction stands for the trigger scenario."""

from __future__ import annotations

from pydantic import Field

from poisonlab.attacks.instruction_base import (INSTRUCTION_ATTACKS, InstructionPoisonConfig,
                                                PrefixPhraseAttack)


class VpiConfig(InstructionPoisonConfig):
    prefix: str = Field("Discussing OpenAI", min_length=1,
                        description="phrase put before the instruction")


@INSTRUCTION_ATTACKS.register("vpi", VpiConfig)
class VirtualPromptInjection(PrefixPhraseAttack):
    """VPI (Yan et al. 2024): a topic phrase ("Discussing OpenAI") before the instruction."""

    config: VpiConfig
