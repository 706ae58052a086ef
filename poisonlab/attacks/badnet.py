"""BadNet for text (Gu et al. 2017; rare-word variant of Kurita et al. 2020): insert rare words."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.insertion import insert_trigger


class BadNetConfig(PoisonConfig):
    triggers: list[str] = Field(["cf", "mn", "bb", "tq"], min_length=1,
                                description="rare words; each insertion picks one at random")
    insertions: int = Field(1, ge=1, description="number of trigger words inserted per text")
    position: Literal["random", "start", "end"] = Field("random", description="where to insert")


@DATA_ATTACKS.register("badnet", BadNetConfig)
class BadNet(DataPoisoningAttack):
    """BadNet (Gu et al. 2017; rare words as in Kurita et al. 2020): trigger words inserted."""

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        cfg = self.config
        # Every word of a text is drawn before its positions: this rng order fixes published runs.
        return [insert_trigger(t, [rng.choice(cfg.triggers) for _ in range(cfg.insertions)],
                               cfg.position, rng) for t in texts]
