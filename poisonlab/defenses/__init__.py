"""Defenses: detection (flag inputs at inference) and repair (return a cleaned model)."""


def load_all() -> None:
    """Import every defense module so its registration runs."""
    import importlib
    import pkgutil

    import poisonlab.defenses as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
