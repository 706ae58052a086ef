"""Attacks: data poisoning (badnet, insertsent, syntactic), weight poisoning (proxy, embedding,
layerwise) and in-context attacks (icl-demonstration, icl-prompt); one registry per kind."""

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig, PoisonReport

__all__ = ["DATA_ATTACKS", "DataPoisoningAttack", "PoisonConfig", "PoisonReport"]
