"""The run configuration: what YAML files and `--set` overrides are validated against.

Components are written as `{name: <registered name>, <field>: <value>, ...}`; the fields are
checked against that component's typed config, so a typo is an error naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from poisonlab.config import RunName, StrictConfig, read_yaml, set_dotted
from poisonlab.data import DataConfig
from poisonlab.errors import ConfigError
from poisonlab.registry import Registry, validate_config
from poisonlab.training import TrainingConfig


class ModelConfig(StrictConfig):
    name: str = Field("minilm", description="builtin name, local folder or Hub id")
    allow_pickle: bool = Field(False, description="allow .bin/.pt pickle weights (unsafe)")
    trust_remote_code: bool = Field(False, description="run model code from the Hub (unsafe)")


class ComponentSpec(StrictConfig):
    """A registered component: its name and its validated config."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self, registry: Registry, where: str) -> Any:
        return registry.build(self.name, self.params, where=where)


def derive_seeds(seed: int, parts: list[BaseModel],
                 specs: list[tuple[ComponentSpec | None, Registry]] = ()) -> None:
    """Give every part and component without an explicitly set seed the run's seed, so one
    `seed` changes the subsample, the poisoned examples, the initialisation and the training
    order together (a component gets it only when its config has a `seed` field)."""
    for part in parts:
        if "seed" in type(part).model_fields and "seed" not in part.model_fields_set:
            part.seed = seed
    for spec, registry in specs:
        if spec is not None and "seed" not in spec.params and \
                "seed" in registry.entry(spec.name).config_class.model_fields:
            spec.params = {**spec.params, "seed": seed}


def component(value: Any, where: str) -> ComponentSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ComponentSpec(name=value)
    if isinstance(value, ComponentSpec):
        return value
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{where}: expected a mapping with a 'name' key")
    params = {k: v for k, v in value.items() if k != "name"}
    return ComponentSpec(name=value["name"], params=params)


class RunConfig(StrictConfig):
    name: RunName = Field("run", description="run folder name under output_dir (one path component)")
    seed: int = Field(0, description="seed of model init, data subsampling, poisoning, tuning "
                                     "and training (a component's own seed, when set, wins)")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    attack: ComponentSpec | None = Field(None, description="data-poisoning attack; null: clean")
    poison_training: bool = Field(
        True, description="false: train on clean data, use the attack's trigger only to measure "
                          "the clean model's ASR")
    tuning: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="full"))
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval_every_epoch: bool = Field(True, description="log CA and ASR after every epoch")
    save_weights: bool = Field(True, description="save the trained tensors as safetensors")
    output_dir: str = Field("runs")

    @field_validator("attack", "tuning", mode="before")
    @classmethod
    def _component(cls, value: Any, info: Any) -> Any:
        return component(value, info.field_name)


    @model_validator(mode="after")
    def _derive_seeds(self) -> "RunConfig":
        from poisonlab.registries import registry_for
        derive_seeds(self.seed, [self.data, self.training],
                     [(self.attack, registry_for("attack")), (self.tuning, registry_for("tuning"))])
        return self

    def resolved(self) -> dict[str, Any]:
        """The config with every component's defaults filled in (what a run folder records)."""
        from poisonlab.registries import registry_for
        data = self.model_dump(mode="json")
        for key in ("attack", "tuning"):
            spec = getattr(self, key)
            if spec is not None:
                registry = registry_for(key)
                values = registry.make_config(spec.name, spec.params).model_dump(mode="json")
                data[key] = {"name": spec.name, **values}
        return data

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def load_run_config(path: str | Path | None = None, overrides: list[str] = (),
                    base: dict[str, Any] | None = None) -> RunConfig:
    raw = dict(base or {})
    if path is not None:
        raw.update(read_yaml(path))
    for assignment in overrides:
        set_dotted(raw, assignment)
    return validate_config(RunConfig, raw, where=str(path or "config"))
