"""The weight-poisoning contract: an attacker poisons model weights and releases them.

Threat model of the PSIM paper (Zhao et al. 2024): the attacker implants a backdoor in a model and
publishes the weights; the victim downloads them and fine-tunes on its own clean data. An attack
here owns one step, `poison_model` (how the weights are poisoned); the shared part lives once:
- the trigger is any data-poisoning attack (`trigger: {name: badnet, triggers: [mn], ...}`);
- proxy texts are cut to `max_length - trigger_room` tokens BEFORE the trigger goes in, so the
  trigger is never truncated away (the reference code loses it on ~7% of IMDB reviews);
- no checkpoint selection: the reference picks the epoch on a dev set whose negatives all carry the
  trigger (selecting for the backdoor); here the last epoch is released, and the release record
  reports CA and ASR on the held-out proxy test split;
- a release is the folder `<parent>/<name>/` (safetensors weights, config, tokenizer, and
  `release.json` with the trigger spec and target), written by `poisonlab.experiment.release`
  under the run protocol; an existing release of the same config is reused.
The victim side (downstream fine-tuning, CA/ASR) is `poisonlab.experiment.victim`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack
from poisonlab.config import RunName, StrictConfig, stable_identity
from poisonlab.data import DataConfig, Example
from poisonlab.errors import PoisonlabError
from poisonlab.models import LoadedModel
from poisonlab.registry import Registry, component_field
from poisonlab.runtime import Runtime
from poisonlab.training import TrainingConfig
from poisonlab.models.architecture import HEAD_NAMES

RELEASE_RECORD = "release.json"
BACKBONE_FOLDER = "backbone"

PAPER_TRIGGER = {"name": "badnet", "triggers": ["mn"], "label_mode": "clean", "target_label": 0,
                 "poison_count": 1500}


class WeightPoisonConfig(StrictConfig):
    """Options shared by every weight-poisoning attack (defaults: the PSIM / W2SDefense recipe)."""

    release_name: RunName | None = Field(None, description="release folder name; null: "
                                                       "<attack>-<config hash>")
    base_model: str = Field("minilm", description="model to poison: builtin, folder or Hub id")
    trigger: component_field(DATA_ATTACKS) = Field(
        default_factory=lambda: DATA_ATTACKS.spec(PAPER_TRIGGER),
        description="data-poisoning attack that makes the trigger: {name: badnet, ...}")
    proxy: DataConfig = Field(default_factory=lambda: DataConfig(name="imdb"),
                              description="the attacker's proxy task data")
    training: TrainingConfig = Field(default_factory=TrainingConfig,
                                     description="poisoning optimisation (lr 2e-5, 3 epochs)")
    trigger_room: int = Field(8, ge=0, description="tokens kept free for the trigger when proxy "
                                                   "texts are cut to the training max_length")
    seed: int = Field(0, description="seed of the model head and of training")


@dataclass
class Release:
    """A released poisoned model folder and its record (trigger spec, target, proxy metrics)."""

    folder: Path
    record: dict[str, Any]

    @property
    def trigger(self) -> dict[str, Any]:
        return self.record["trigger"]

    @property
    def label_names(self) -> list[str]:
        return self.record["proxy"]["label_names"]

    def backbone(self) -> Path:
        """The release without its task head (a victim with other labels gets a fresh head)."""
        folder = self.folder / BACKBONE_FOLDER
        if not folder.exists():
            from safetensors.torch import load_file, save_file
            tmp = _temp_folder(folder)
            for item in self.folder.iterdir():
                if item.is_file() and item.name != RELEASE_RECORD:
                    shutil.copy2(item, tmp / item.name)
            for weights in tmp.glob("*.safetensors"):
                state = {k: v for k, v in load_file(str(weights)).items()
                         if k.split(".")[0] not in HEAD_NAMES}
                save_file(state, str(weights), metadata={"format": "pt"})
            try:
                os.replace(tmp, folder)
            except OSError:
                if not folder.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
        return folder


def read_release(folder: str | Path) -> Release:
    folder = Path(folder)
    path = folder / RELEASE_RECORD
    if not path.exists():
        raise PoisonlabError(f"{folder} is not a released model folder (no {RELEASE_RECORD}); "
                             "make one with `poisonlab poison-weights CONFIG`")
    return Release(folder, json.loads(path.read_text(encoding="utf-8")))


def fit_to_length(examples: list[Example], tokenizer: Any, max_tokens: int) -> list[Example]:
    """Cut each text after its `max_tokens`-th token, so a trigger inserted later stays in."""
    encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_tokens,
                        add_special_tokens=False, return_offsets_mapping=True)
    return [e.with_text(e.text[:offsets[-1][1]]) if offsets else e
            for e, offsets in zip(examples, encoded["offset_mapping"])]


def _temp_folder(folder: Path) -> Path:
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


class WeightPoisoningAttack(ABC):
    """Base of every weight-poisoning attack. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    ("encoder", "causal") it applies to; `known_limits` what a functional check cannot show
    for this component on a test model, {(check, model): measured reason} (the check runs as a
    strict expected failure, so a fix shows up)."""

    name: ClassVar[str]
    config_class: ClassVar[type[WeightPoisonConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")
    known_limits: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, config: WeightPoisonConfig):
        self.config = config

    @abstractmethod
    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        """Poison `loaded.model` in place. `poisoned_train` is `clean_train` after the trigger
        attack's `poison` (triggered examples have `poisoned=True`); its training runs through
        `runtime` (precision, accumulation, processes) when given."""

    def folder_name(self) -> str:
        if self.config.release_name:
            return self.config.release_name
        # the stable identity: a field poisonlab adds later does not rename existing releases
        spec = json.dumps(stable_identity(self.config.model_dump(mode="json")), sort_keys=True)
        return f"{self.name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"

    def trigger_attack(self) -> DataPoisoningAttack:
        return self.config.trigger.build()

    def resolved(self) -> dict[str, Any]:
        return {"attack": self.name, **self.config.model_dump(mode="json")}


WEIGHT_ATTACKS: Registry[WeightPoisoningAttack] = Registry("weight-poisoning attack", "poisonlab.attacks")
