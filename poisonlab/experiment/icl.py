"""An in-context run: the config schema (what `configs/icl/*.yaml` is validated against) and
`ICLExperiment`, which loads the model and data once and evaluates any number of attacks, each into
its own run folder (config.yaml, environment.json, predictions.jsonl, metrics.json last)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import BeforeValidator, Field, model_validator

from poisonlab.attacks.icl_base import ICL_ATTACKS, ICLAttack
from poisonlab.config import StrictConfig, load_config
from poisonlab.data import Example, load_dataset
from poisonlab.errors import ConfigError
from poisonlab.experiment.config import derive_seeds
from poisonlab.experiment.rundir import RunSlot
from poisonlab.icl.calibration import DEFAULT_CONTENT_FREE
from poisonlab.icl.demonstrations import Demonstration, as_demonstrations, sample_balanced
from poisonlab.icl.evaluate import ICLEvaluation, ICLEvaluator
from poisonlab.icl.scoring import LabelScorer
from poisonlab.icl.template import PromptTemplate
from poisonlab.icl.verbalizer import Aggregation, ScoringMode, Verbalizer
from poisonlab.models import LoadedModel, load_causal_lm
from poisonlab.models.loading import DeviceMapOption
from poisonlab.registry import ComponentSpec, component_field
from poisonlab.runtime import Runtime, RuntimeConfig


class FixedDemonstration(StrictConfig):
    text: str
    label: int = Field(ge=0)


class DemonstrationConfig(StrictConfig):
    shots_per_class: int = Field(6, ge=1, description="demonstrations sampled per class")
    split: Literal["train", "dev", "test"] = Field("train", description="split sampled from")
    fixed: list[FixedDemonstration] | None = Field(
        None, description="use exactly these demonstrations, in this order (no sampling)")


def _flat_attack(value: Any) -> Any:
    """Accept the older `{name, config: {...}}` layout of an attack as `{name, ...}`."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        rest = {k: v for k, v in value.items() if k != "config"}
        return {"name": "icl-demonstration", **value["config"], **rest}
    return value


class ICLRunConfig(StrictConfig):
    model: str = Field("smollm2-135m", description="causal LM: builtin name, folder or Hub id")
    dataset: str = Field("sst2", description="data set name (see `poisonlab list`) or trec4")
    test_size: int | None = Field(None, ge=1, description="seeded test subsample; null = all")
    template: str = Field("{text} It was {label}.", description="clean demonstration template")
    label_words: list[list[str]] = Field(
        [["bad"], ["good", "great", "wonderful"]],
        description="words per class; a demonstration shows the first")
    separator: str = Field("\n", description="written after every demonstration")
    scoring: ScoringMode = Field("first-token", description="multi-token label words: "
                                 "first-token or sum of token log-probs")
    aggregation: Aggregation = Field(
        "log-mean-prob", description="a class's score from its words' log-probs: log-mean-prob "
        "(log of the mean probability), mean-log-prob (OpenPrompt's) or max")
    content_free_inputs: list[str] = Field(list(DEFAULT_CONTENT_FREE),
                                           description="inputs for contextual calibration")
    demonstrations: DemonstrationConfig = Field(default_factory=DemonstrationConfig)
    attack: Annotated[component_field(ICL_ATTACKS), BeforeValidator(_flat_attack)] = Field(
        default_factory=lambda: ICL_ATTACKS.spec("icl-demonstration"),
        description="in-context attack: {name: icl-demonstration, <field>: <value>, ...}")
    batch_size: int = Field(16, ge=1, description="queries per forward pass")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="model weights; bfloat16 is about 2x faster on CPUs with AVX512-BF16")
    device_map: DeviceMapOption = Field(
        None, description="spread the weights over devices as they load (auto, balanced, "
                          "sequential, a device or {module: device}), for models larger than "
                          "one GPU; null: the whole model on runtime.device")
    seed: int = Field(0, description="seed for demonstrations and the test subsample")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig,
                                   description="where the model runs (device)")
    output_dir: str = Field("runs/icl", description="where run folders go")

    @model_validator(mode="after")
    def _derive_attack_seed(self) -> "ICLRunConfig":
        """The run's seed also picks the poisoned demonstrations unless the attack sets its own."""
        derive_seeds(self.seed, [self.attack])
        return self


def load_icl_config(path: str | Path, overrides: Sequence[str] = ()) -> ICLRunConfig:
    return load_config(ICLRunConfig, path, overrides)


def load_icl_model(config: Any, *, allow_pickle: bool = False,
                   trust_remote_code: bool = False) -> LoadedModel:
    """The causal LM of an ICL run or study, loaded straight in its dtype and placement (a
    fp32 copy is never built on the way to bf16; a device map spreads it as it loads)."""
    return load_causal_lm(config.model, seed=config.seed, dtype=config.dtype,
                          device_map=config.device_map, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code)


class ICLExperiment:
    """Model, data, demonstrations and scorer for one config; `run` evaluates one attack."""

    def __init__(self, config: ICLRunConfig, loaded: LoadedModel | None = None, *,
                 allow_pickle: bool = False, trust_remote_code: bool = False,
                 progress: bool = False):
        self.config = config
        self.loaded = loaded
        self.trust = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
        self.progress = progress
        self.runtime_ = Runtime(config.runtime)

    def prepare(self) -> "ICLExperiment":
        cfg = self.config
        template = PromptTemplate(cfg.template)
        verbalizer = Verbalizer.from_lists(cfg.label_words, cfg.aggregation)
        dataset = load_dataset(cfg.dataset)
        if dataset.num_labels != verbalizer.num_labels:
            raise ConfigError(f"label_words: {verbalizer.num_labels} classes given, data set "
                              f"'{cfg.dataset}' has {dataset.num_labels} ({dataset.label_names})")
        self.demonstrations_ = self._demonstrations(dataset.split(cfg.demonstrations.split),
                                                    verbalizer.num_labels, template)
        self.test_ = self._subsample(dataset.test)
        self.loaded_ = self.loaded or load_icl_model(cfg, **self.trust)
        self.runtime_.place(self.loaded_.model)
        scorer = LabelScorer(self.loaded_, verbalizer, template.label_prefix, cfg.scoring,
                             cfg.batch_size, progress=self.progress)
        self.evaluator_ = ICLEvaluator(scorer, template, cfg.separator,
                                       tuple(cfg.content_free_inputs))
        return self

    def _demonstrations(self, pool: list[Example], num_labels: int,
                        template: PromptTemplate) -> list[Demonstration]:
        demos = self.config.demonstrations
        if demos.fixed is not None:
            bad = [d.label for d in demos.fixed if d.label >= num_labels]
            if bad:
                raise ConfigError(f"demonstrations.fixed: labels {bad} are not in 0..{num_labels - 1}")
            return as_demonstrations([Example(d.text, d.label) for d in demos.fixed], template)
        return as_demonstrations(sample_balanced(pool, demos.shots_per_class, num_labels,
                                                 self.config.seed), template)

    def _subsample(self, test: list[Example]) -> list[Example]:
        size = self.config.test_size
        if size is None or size >= len(test):
            return list(test)
        keep = sorted(random.Random(self.config.seed + 1).sample(range(len(test)), size))
        return [test[i] for i in keep]

    def evaluate(self, attack: ComponentSpec | ICLAttack) -> ICLEvaluation:
        if not hasattr(self, "evaluator_"):
            self.prepare()
        if isinstance(attack, ComponentSpec):
            attack = attack.build()
        return self.evaluator_.evaluate(self.demonstrations_, self.test_, attack)

    def run(self, run_dir: str | Path, attack: ComponentSpec | None = None,
            force: bool = False) -> dict[str, Any]:
        """Evaluate `attack` (default: the config's) into `run_dir` under the run protocol (a
        finished folder of the same config is reused). The attack is checked against the data
        and demonstrations before the folder is created."""
        spec = attack or self.config.attack
        built = spec.build()
        resolved = self.config.model_copy(update={"attack": spec}).model_dump(mode="json")
        slot = RunSlot(run_dir, resolved, kind="icl", seed=self.config.seed,
                       runtime=self.runtime_.check())
        reused = slot.reusable(force)
        if reused is not None:
            return reused
        if not hasattr(self, "evaluator_"):
            self.prepare()
        built.check_labels(self.evaluator_.scorer.verbalizer.num_labels)
        built.poisoned_indices(self.demonstrations_)
        with slot.building() as run:
            result = self.evaluate(built)
            run.write_predictions("predictions", result.prediction_rows())
            metrics = {"seed": self.config.seed, "model": self.config.model,
                       "dataset": self.config.dataset, "attack": spec.name,
                       "attack_config": built.config.model_dump(mode="json"),
                       "counts": result.counts,
                       "poisoned_demonstrations": result.poisoned_indices, **result.metrics}
            run.finish(metrics)
            return run.read_metrics()
