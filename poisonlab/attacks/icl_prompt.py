"""ICLAttack, poisoned prompt (Zhao et al. 2024, "Universal Vulnerabilities in Large Language
Models: Backdoor Attacks for In-context Learning").

Threat model: the attacker writes the prompt template. Some target-class demonstrations use a
different wording (reference: "This sentence was" instead of "It was"), labels left correct; that
wording on a test query is the trigger. The inputs themselves are never changed.
Differences from the reference code: how many target-class demonstrations get the wording is a
config field (the reference rewords all of them); the wording is any template, and poisoned
demonstrations may be worded apart from queries (`trigger_demonstration_template`; the reference
quotes its demonstrations but not its queries)."""

from __future__ import annotations

from pydantic import Field

from poisonlab.attacks.icl_base import ICL_ATTACKS, ICLAttack, ICLAttackConfig
from poisonlab.icl.demonstrations import Demonstration
from poisonlab.icl.template import PromptTemplate


class ICLPromptConfig(ICLAttackConfig):
    trigger_template: str = Field(
        "{text} This sentence was {label}.",
        description="template wording of triggered queries (and of poisoned demonstrations "
                    "unless trigger_demonstration_template is set)")
    trigger_demonstration_template: str | None = Field(
        None, description="wording of poisoned demonstrations when they are written unlike "
                          "queries (the reference quotes them: '\"{text}\" This sentence was "
                          "\"{label}\";'); null: trigger_template")


@ICL_ATTACKS.register("icl-prompt", ICLPromptConfig)
class ICLPromptAttack(ICLAttack):
    """ICLAttack (Zhao et al. 2024), poisoned prompt: another template wording is the trigger."""

    @property
    def _template(self) -> PromptTemplate:
        return PromptTemplate(self.config.trigger_template,
                              self.config.trigger_demonstration_template)

    def poison_one(self, demonstration: Demonstration) -> Demonstration:
        return demonstration.with_template(self._template)

    def trigger_queries(self, queries: list[Demonstration]) -> list[Demonstration]:
        return [q.with_template(self._template) for q in queries]
