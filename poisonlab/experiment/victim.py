"""The victim of a weight-poisoning attack: released weights -> clean downstream fine-tuning with
any tuning strategy -> CA, and ASR with the release's trigger.

A victim is an ordinary run folder (`run_experiment` with `model.name` = the released folder,
`attack` = the release's trigger spec and `poison_training: false`: the trigger only touches the
test set), so `restore_run` rebuilds it and defenses take it as input. `victim.json` beside it
records the release. Task head (`head`):
- `auto` (default): reuse the released head when the downstream label names equal the proxy's
  (IMDB -> SST-2 / CR: negative, positive), as the PSIM reference code does; otherwise fresh;
- `reuse` / `fresh`: force it (a fresh head loads the release's `backbone/` copy, head removed).
`weights: clean` is the baseline: the same downstream training on the attack's unpoisoned base
model, with the same trigger on the test set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from poisonlab.attacks.weight_base import Release, build_weight_attack, read_release
from poisonlab.config import StrictConfig, read_yaml, set_dotted
from poisonlab.data import DataConfig, load_dataset
from poisonlab.experiment.config import ComponentSpec, RunConfig, component
from poisonlab.experiment.pipeline import run_experiment
from poisonlab.experiment.rundir import RunDir
from poisonlab.io import write_json
from poisonlab.registry import validate_config
from poisonlab.training import TrainingConfig


class VictimConfig(StrictConfig):
    name: str = Field("victim", description="run folder name under output_dir")
    seed: int = Field(0, description="seed of the head, the PEFT parameters and training")
    poison: dict[str, Any] | None = Field(
        None, description="weight-poisoning attack to release (or reuse): {name: proxy, ...}")
    released: str | None = Field(None, description="an existing released folder (instead of "
                                                   "poison)")
    release_dir: str = Field("released", description="parent folder of releases made by poison")
    weights: Literal["poisoned", "clean"] = Field(
        "poisoned", description="clean: the unpoisoned base model (baseline), same trigger")
    head: Literal["auto", "reuse", "fresh"] = Field(
        "auto", description="auto: reuse the released head when the label names match")
    data: DataConfig = Field(description="the victim's downstream (clean) data")
    tuning: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="full"))
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval_every_epoch: bool = Field(False, description="log CA and ASR after every epoch")
    save_weights: bool = Field(True, description="save the trained tensors (restore_run needs "
                                                 "them)")
    output_dir: str = Field("runs")

    @model_validator(mode="before")
    @classmethod
    def _tuning_spec(cls, values: Any) -> Any:
        if isinstance(values, dict) and "tuning" in values:
            values = {**values, "tuning": component(values["tuning"], "tuning")}
        return values

    @model_validator(mode="after")
    def _one_source(self) -> "VictimConfig":
        if (self.poison is None) == (self.released is None):
            raise ValueError("set exactly one of 'poison' (an attack to release) and 'released' "
                             "(a released folder)")
        if self.poison is not None and "name" not in self.poison:
            raise ValueError("'poison' needs a 'name' (a weight-poisoning attack)")
        if self.weights == "clean" and self.poison is None:
            raise ValueError("weights: clean needs 'poison' (its base model and trigger)")
        return self


def load_victim_config(path: str | Path | None = None, overrides: list[str] = (),
                       base: dict[str, Any] | None = None) -> VictimConfig:
    raw = dict(base or {})
    if path is not None:
        raw.update(read_yaml(path))
    for assignment in overrides:
        set_dotted(raw, assignment)
    return validate_config(VictimConfig, raw, where=str(path or "victim config"))


def _attack(config: VictimConfig):
    spec = dict(config.poison or {})
    name = spec.pop("name")
    return build_weight_attack(name, spec, where=f"poison '{name}'")


def victim_model(config: VictimConfig, release: Release | None,
                 label_names: list[str]) -> tuple[str, str]:
    """(model folder or name the victim fine-tunes, head used: reuse | fresh)."""
    if release is None:
        return _attack(config).config.base_model, "fresh"
    reuse = config.head == "reuse" or (config.head == "auto"
                                       and release.label_names == label_names)
    folder = release.folder if reuse else release.backbone()
    return str(folder.resolve()), "reuse" if reuse else "fresh"


def run_victim(config: VictimConfig, *, force: bool = False, progress: bool = True) -> dict:
    """Release (or reuse) the poisoned weights, fine-tune them cleanly, measure CA and ASR."""
    run = RunDir(Path(config.output_dir) / config.name)
    if run.finished() and not force:
        return {**run.read_metrics(), **_victim_record(run)}
    release: Release | None = None
    if config.weights == "clean":
        trigger = _attack(config).config.trigger
    else:
        release = (read_release(config.released) if config.released else
                   _attack(config).release(config.release_dir, progress=progress))
        trigger = release.trigger
    label_names = load_dataset(config.data).label_names
    model_name, head = victim_model(config, release, label_names)
    record = {"weights": config.weights, "head": head,
              "release": str(release.folder.resolve()) if release else None,
              "release_attack": release.record["attack"] if release else None,
              "proxy_test_metrics": release.record["proxy_test_metrics"] if release else None}
    run_config = RunConfig(
        name=config.name, seed=config.seed, data=config.data, model={"name": model_name},
        attack=trigger, poison_training=False, tuning=config.tuning, training=config.training,
        eval_every_epoch=config.eval_every_epoch, save_weights=config.save_weights,
        output_dir=config.output_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.path / "victim.json", record)
    return {**run_experiment(run_config, force=force, progress=progress), **record}


def _victim_record(run: RunDir) -> dict[str, Any]:
    path = run.path / "victim.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
