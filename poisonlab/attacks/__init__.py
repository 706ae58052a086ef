"""Attacks: data poisoning (badnet, insertsent, syntactic), weight poisoning, in-context attacks."""

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig, PoisonReport

__all__ = ["DATA_ATTACKS", "DataPoisoningAttack", "PoisonConfig", "PoisonReport",
           "build_attack", "load_all"]


def load_all() -> None:
    """Import every attack module so its registration runs."""
    import importlib
    import pkgutil

    import poisonlab.attacks as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def build_attack(name: str, values: dict | None = None) -> DataPoisoningAttack:
    load_all()
    return DATA_ATTACKS.build(name, values)
