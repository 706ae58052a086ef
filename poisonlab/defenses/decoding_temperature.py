"""Decoding-time temperature: sample the suspect's answers instead of decoding greedily.

The idea: a trigger that makes the target the greedy answer by a small margin loses to sampled
alternatives, so sampling at a higher temperature may lower ASR (at a cost in answer quality). Nothing about the model or its inputs changes; samples are
seeded (the generation config's seed), so a run repeats exactly."""

from __future__ import annotations

from pydantic import Field

from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, GenerativeDefense,
                                                GenerativeDefenseConfig)
from poisonlab.training.generation import GenerationConfig


class TemperatureConfig(GenerativeDefenseConfig):
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the answers")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")


@GENERATIVE_DEFENSES.register("temperature", TemperatureConfig)
class DecodingTemperature(GenerativeDefense):
    """Decoding temperature (as a defense, cf. BackdoorLLM, Li et al. 2024): sample answers."""

    config: TemperatureConfig
    stage = "decoding"

    def decoding(self, generation: GenerationConfig) -> GenerationConfig:
        return generation.model_copy(update={"temperature": self.config.temperature,
                                             "top_p": self.config.top_p})
