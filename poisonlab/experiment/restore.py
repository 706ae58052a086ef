"""Rebuild the trained model of a finished run folder (for defenses, reports and reuse)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from poisonlab.errors import PoisonlabError
from poisonlab.experiment.config import RunConfig
from poisonlab.models import LoadedModel, load_classifier
from poisonlab.registry import validate_config
from poisonlab.tuning import TUNING_STRATEGIES, TuningStrategy, _load_all as load_strategies


@dataclass
class RestoredRun:
    config: RunConfig
    loaded: LoadedModel           # base model + tokenizer (loaded.model is the unwrapped base)
    strategy: TuningStrategy
    model: torch.nn.Module        # the trained model, ready for inference
    metrics: dict[str, Any]


def restore_run(run_dir: str | Path, num_labels: int | None = None) -> RestoredRun:
    """Load base model, re-apply the run's tuning strategy and load its trained tensors."""
    from safetensors.torch import load_file

    folder = Path(run_dir)
    for name in ("config.yaml", "metrics.json", "trained.safetensors"):
        if not (folder / name).exists():
            raise PoisonlabError(f"{folder} is not a finished run folder with saved weights "
                                 f"(missing {name}; was save_weights false?)")
    raw = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    config = validate_config(RunConfig, raw, where=str(folder / "config.yaml"))
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if num_labels is None:
        num_labels = len(metrics.get("per_class_accuracy") or [0, 0])
    load_strategies()
    strategy = config.tuning.build(TUNING_STRATEGIES, where=str(folder / "config.yaml"))
    loaded = load_classifier(config.model.name, num_labels, seed=config.seed,
                             allow_pickle=config.model.allow_pickle,
                             trust_remote_code=config.model.trust_remote_code)
    torch.manual_seed(config.seed)
    model = strategy.apply(loaded)
    strategy.load_trainable_state(model, load_file(str(folder / "trained.safetensors")))
    model.eval()
    return RestoredRun(config, loaded, strategy, model, metrics)
