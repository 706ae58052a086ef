"""InsertSent (Dai et al. 2019): insert a fixed trigger sentence into the text."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.insertion import insert_trigger


class InsertSentConfig(PoisonConfig):
    sentence: str = Field("I watched this 3D movie", min_length=1, description="trigger sentence")
    position: Literal["random", "start", "end"] = Field(
        "random", description="random: between two words at a random place")


@DATA_ATTACKS.register("insertsent", InsertSentConfig)
class InsertSent(DataPoisoningAttack):
    """InsertSent (Dai et al. 2019): a trigger sentence ("I watched this 3D movie") inserted."""

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        cfg = self.config
        return [insert_trigger(text, cfg.sentence, cfg.position, rng) for text in texts]
