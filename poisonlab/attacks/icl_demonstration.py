"""ICLAttack, poisoned demonstrations (Zhao et al. 2024, "Universal Vulnerabilities in Large
Language Models: Backdoor Attacks for In-context Learning").

Threat model: the attacker writes some demonstrations, not the weights. A trigger sentence is
added to some target-class demonstrations, labels left correct (clean-label); at test time the
same sentence on any input should push the model to the target label.
Differences from the reference code: the poisoned demonstrations are chosen with a seed (or
given as positions) rather than fixed; the trigger's position is a config field (start, middle
after half the words, end) applied alike to demonstrations and queries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poisonlab.attacks.icl_base import ICL_ATTACKS, ICLAttack, ICLAttackConfig
from poisonlab.attacks.insertion import insert_trigger
from poisonlab.icl.demonstrations import Demonstration


class ICLDemonstrationConfig(ICLAttackConfig):
    trigger: str = Field("I watched this 3D movie.", min_length=1,
                         description="trigger sentence added to poisoned demonstrations and queries")
    trigger_position: Literal["start", "middle", "end"] = Field(
        "end", description="where the trigger goes in a text")


@ICL_ATTACKS.register("icl-demonstration", ICLDemonstrationConfig)
class ICLDemonstrationAttack(ICLAttack):
    """ICLAttack (Zhao et al. 2024), poisoned demonstrations: target-class ones get a trigger."""

    def _triggered(self, demonstration: Demonstration) -> Demonstration:
        cfg = self.config
        return demonstration.with_text(insert_trigger(demonstration.text, cfg.trigger.strip(),
                                                      cfg.trigger_position))

    def poison_one(self, demonstration: Demonstration) -> Demonstration:
        return self._triggered(demonstration)

    def trigger_queries(self, queries: list[Demonstration]) -> list[Demonstration]:
        return [self._triggered(q) for q in queries]
