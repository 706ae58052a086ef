"""Fine-tuning strategies: full, lora, prefix, prompt, ptuning, adapter, ia3 (see each module)."""

from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy, count_parameters

__all__ = ["TUNING_STRATEGIES", "TuningStrategy", "build_strategy", "count_parameters"]


def build_strategy(name: str, values: dict | None = None) -> TuningStrategy:
    _load_all()
    return TUNING_STRATEGIES.build(name, values)


def _load_all() -> None:
    """Import every strategy module so its registration runs."""
    import importlib
    import pkgutil

    import poisonlab.tuning as package
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")
