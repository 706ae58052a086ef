"""Every registry, with its components imported, for `poisonlab list` and the conformance tests."""

from __future__ import annotations

import importlib

from poisonlab.registry import Registry

# (module that defines the registry, attribute, module whose import registers the components)
REGISTRIES = [
    ("poisonlab.attacks.base", "DATA_ATTACKS", "poisonlab.attacks:load_all"),
    ("poisonlab.attacks.weight_base", "WEIGHT_ATTACKS", "poisonlab.attacks:load_all"),
    ("poisonlab.icl.attack_base", "ICL_ATTACKS", "poisonlab.attacks:load_all"),
    ("poisonlab.tuning.base", "TUNING_STRATEGIES", "poisonlab.tuning:_load_all"),
    ("poisonlab.defenses.base", "DETECTORS", "poisonlab.defenses:load_all"),
    ("poisonlab.defenses.repair_base", "REPAIRS", "poisonlab.defenses:load_all"),
]


def all_registries() -> list[Registry]:
    found = []
    for module_name, attribute, loader in REGISTRIES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if module_name.startswith(exc.name or "?"):
                continue  # that feature is not installed in this version
            raise
        loader_module, loader_name = loader.split(":")
        getattr(importlib.import_module(loader_module), loader_name)()
        found.append(getattr(module, attribute))
    return found


def registry_for(kind: str) -> Registry:
    """The registry of a run-config section ("attack" -> data attacks, "tuning" -> strategies)."""
    if kind == "attack":
        from poisonlab.attacks import DATA_ATTACKS, load_all
        load_all()
        return DATA_ATTACKS
    if kind == "tuning":
        from poisonlab.tuning import TUNING_STRATEGIES, _load_all
        _load_all()
        return TUNING_STRATEGIES
    raise KeyError(kind)
