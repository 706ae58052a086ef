"""Rebuild the trained model of a finished run folder (for defenses, reports and reuse)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from poisonlab.defenses.base import SuspectModel
from poisonlab.errors import PoisonlabError
from poisonlab.experiment.config import RunConfig
from poisonlab.models import LoadedModel, load_classifier
from poisonlab.registry import validate_config
from poisonlab.tuning import TuningStrategy


@dataclass
class RestoredRun:
    config: RunConfig
    loaded: LoadedModel           # base model + tokenizer (loaded.model is the unwrapped base)
    strategy: TuningStrategy
    model: torch.nn.Module        # the trained model, ready for inference
    metrics: dict[str, Any]


def trained_run_config(run_dir: str | Path) -> RunConfig:
    """The train-and-measure config a run folder trained: its config.yaml, or for a victim
    folder the run config recorded in victim.json."""
    folder = Path(run_dir)
    victim = folder / "victim.json"
    if victim.is_file():
        raw = json.loads(victim.read_text(encoding="utf-8")).get("run_config")
        if raw is not None:
            return validate_config(RunConfig, raw, where=f"{victim}: run_config")
    raw = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    return validate_config(RunConfig, raw, where=str(folder / "config.yaml"))


def restore_run(run_dir: str | Path, num_labels: int | None = None, *,
                allow_pickle: bool = False, trust_remote_code: bool = False) -> RestoredRun:
    """Load base model, re-apply the run's tuning strategy and load its trained tensors.

    The folder is untrusted: `allow_pickle` and `trust_remote_code` come from the person
    restoring it, never from the folder's own config."""
    from safetensors.torch import load_file

    folder = Path(run_dir)
    if not folder.is_dir():
        raise PoisonlabError(f"{folder}: run folder not found")
    for name in ("config.yaml", "metrics.json", "trained.safetensors"):
        if not (folder / name).exists():
            raise PoisonlabError(f"{folder} is not a finished run folder with saved weights "
                                 f"(missing {name}; was save_weights false?)")
    config = trained_run_config(folder)
    config = config.model_copy(update={"model": config.model.model_copy(update={
        "allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code})})
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if num_labels is None:
        num_labels = len(metrics.get("per_class_accuracy") or [0, 0])
    strategy = config.tuning.build()
    # the run's own loading options (dtype, attention, quantization), the caller's trust
    loaded = load_classifier(config.model.name, num_labels, seed=config.seed,
                             **config.model.load_options())
    torch.manual_seed(config.seed)
    model = strategy.apply(loaded)
    strategy.load_trainable_state(model, load_file(str(folder / "trained.safetensors")))
    model.eval()
    return RestoredRun(config, loaded, strategy, model, metrics)


def suspect_from_run(run_dir: str | Path, *, allow_pickle: bool = False,
                     trust_remote_code: bool = False, **kwargs: Any) -> SuspectModel:
    """What a defender holds, from a run folder: its trained model, and as the suspect weights its
    base model (`model.name`, the released checkpoint in the weight-poisoning threat model).
    Trust settings are the caller's: the folder's own config never grants them."""
    run = restore_run(run_dir, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    num_labels = run.model.config.num_labels
    name, seed, options = run.config.model.name, run.config.seed, run.config.model.load_options()
    return SuspectModel(run.model, run.loaded.tokenizer, num_labels,
                        lambda: load_classifier(name, num_labels, seed=seed, **options),
                        f"{name} (head seed {seed})", max_length=run.config.training.max_length,
                        **kwargs)
