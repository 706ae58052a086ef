"""The run configuration: what YAML files and `--set` overrides are validated against.

Components are written as `{name: <registered name>, <field>: <value>, ...}`; the fields are
checked against that component's typed config, so a typo is an error naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, Field, model_validator

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.config import RunName, StrictConfig, load_config
from poisonlab.data import DataConfig
from poisonlab.defenses.sanitize_base import SANITIZERS
from poisonlab.models.loading import (AttnImplementation, DeviceMapOption, DtypeName,
                                      QuantizationName)
from poisonlab.registry import ComponentSpec, component_field
from poisonlab.runtime import RuntimeConfig
from poisonlab.training import RunTrainingConfig
from poisonlab.tuning import TUNING_STRATEGIES


class ModelConfig(StrictConfig):
    """The `model:` section: which model, and how its weights load (`load_options()` are the
    keyword arguments of `check_model_source` and the `load_*` functions).

    Every loading option defaults to null, so adding them left the hashes of finished run
    folders unchanged; `dtype: null` means float32."""

    name: str = Field("minilm", description="builtin name, local folder or Hub id")
    dtype: DtypeName | None = Field(
        None, description="weight dtype; null: float32, whatever the checkpoint's dtype, "
                          "what anything that trains needs; auto: the checkpoint's own dtype, "
                          "for inference-only jobs; bfloat16/float16: half the memory, and a "
                          "training job then has no fp32 master weights (for autocast use "
                          "runtime.mixed_precision)")
    device_map: DeviceMapOption = Field(
        None, description="where the weights go, for inference-only jobs (ICL, ONION's language "
                          "model, teachers): auto, balanced, balanced_low_0, sequential, a device "
                          "(cpu, cuda:1) or {module: device}; null: one device, the runtime's")
    attn_implementation: AttnImplementation | None = Field(
        None, description="eager, sdpa or flash_attention_2 (needs the flash-attn package and a "
                          "GPU); null: transformers' default for the architecture")
    quantization: QuantizationName | None = Field(
        None, description="load the weights in 4bit (NF4; with tuning: lora this is QLoRA) or "
                          "8bit through bitsandbytes: needs a CUDA GPU and pip install "
                          "poisonlab[quantization]; cannot be fully fine-tuned; null: unquantized")
    allow_pickle: bool = Field(False, description="allow .bin/.pt pickle weights (unsafe)")
    trust_remote_code: bool = Field(False, description="run model code from the Hub (unsafe)")

    def load_options(self) -> dict[str, Any]:
        """Everything but the name, as keyword arguments of the loaders."""
        return self.model_dump(exclude={"name"})


class JobConfig(StrictConfig):
    """A config that runs into one folder, `output_dir/name`, and records itself resolved (every
    default filled in) there; subclasses define `name` and `output_dir`."""

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name  # type: ignore[attr-defined]


def derive_seeds(seed: int, parts: list[BaseModel | ComponentSpec | None]) -> None:
    """Give every part (a config section or a component) without an explicitly set seed the
    run's seed, so one `seed` changes the subsample, the poisoned examples, the initialisation
    and the training order together."""
    for part in parts:
        config = part.config if isinstance(part, ComponentSpec) else part
        if config is not None and "seed" in type(config).model_fields \
                and "seed" not in config.model_fields_set:
            config.seed = seed


class RunConfig(JobConfig):
    name: RunName = Field("run", description="run folder name under output_dir (one path component)")
    seed: int = Field(0, description="seed of model init, data subsampling, poisoning, tuning "
                                     "and training (a component's own seed, when set, wins)")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    attack: component_field(DATA_ATTACKS) | None = Field(
        None, description="data-poisoning attack; null: clean")
    poison_training: bool = Field(
        True, description="false: train on clean data, use the attack's trigger only to measure "
                          "the clean model's ASR")
    sanitize: component_field(SANITIZERS) | None = Field(
        None, description="training-set defense applied to the (poisoned) training set before "
                          "tuning: {name: bki|cube, <field>: <value>}; null: train on all of it")
    tuning: component_field(TUNING_STRATEGIES) = Field(
        default_factory=lambda: TUNING_STRATEGIES.spec("full"))
    training: RunTrainingConfig = Field(default_factory=RunTrainingConfig)
    eval_every_epoch: bool = Field(True, description="log CA and ASR after every epoch")
    save_weights: bool = Field(True, description="save the trained tensors as safetensors")
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="device, mixed precision, gradient accumulation and checkpointing (the "
                    "processes come from the launcher: accelerate launch / torchrun); default "
                    "values are not part of the run's identity")
    output_dir: str = Field("runs")

    @model_validator(mode="after")
    def _derive_seeds(self) -> "RunConfig":
        derive_seeds(self.seed, [self.data, self.training, self.attack, self.tuning,
                                 self.sanitize])
        return self


def load_run_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                    base: dict[str, Any] | None = None) -> RunConfig:
    return load_config(RunConfig, path, overrides, base)
