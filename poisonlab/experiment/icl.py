"""An in-context run: the config schema (what `configs/icl/*.yaml` is validated against) and
`ICLExperiment`, which loads the model and data once and evaluates any number of attacks, each into
its own run folder (config.yaml, environment.json, predictions.jsonl, metrics.json last)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import BeforeValidator, Field, model_serializer, model_validator

from poisonlab.attacks.icl_base import ICL_ATTACKS, ICLAttack
from poisonlab.config import StrictConfig, load_config
from poisonlab.data import Example, load_dataset
from poisonlab.errors import ConfigError
from poisonlab.experiment.config import derive_seeds
from poisonlab.experiment.rundir import RunSlot
from poisonlab.icl.calibration import DEFAULT_CONTENT_FREE
from poisonlab.icl.demonstrations import (Demonstration, as_demonstrations, cycled_label_words,
                                          sample_balanced)
from poisonlab.icl.evaluate import ICLEvaluation, ICLEvaluator
from poisonlab.icl.scoring import LabelScorer, Tokenization
from poisonlab.icl.template import PromptTemplate
from poisonlab.icl.verbalizer import Aggregation, ScoringMode, Verbalizer
from poisonlab.models import LoadedModel, load_causal_lm
from poisonlab.models.loading import DeviceMapOption
from poisonlab.registry import ComponentSpec, component_field
from poisonlab.runtime import Runtime, RuntimeConfig


TestSampling = Literal["random", "stratified"]


class FixedDemonstration(StrictConfig):
    text: str
    label: int = Field(ge=0)
    label_word: str | None = Field(
        None, description="the word this demonstration shows after its text; null: as "
                          "demonstrations.label_words or the verbalizer's first word say")
    attacked_text: str | None = Field(
        None, description="its text in the poisoned context, before the attack rewrites it, "
                          "where a reference's attacked prompt words it differently from the "
                          "clean one (the ICLAttack scripts add spaces); the margin shift then "
                          "includes that difference; null: text")

    @model_serializer(mode="wrap")
    def _without_unset_fields(self, handler: Any) -> dict[str, Any]:
        # unset later fields are left out, so runs recorded before they existed keep their hash
        data = handler(self)
        for name in ("label_word", "attacked_text"):
            if getattr(self, name) is None:
                data.pop(name, None)
        return data


class DemonstrationConfig(StrictConfig):
    shots_per_class: int = Field(6, ge=1, description="demonstrations sampled per class")
    split: Literal["train", "dev", "test"] = Field("train", description="split sampled from")
    fixed: list[FixedDemonstration] | None = Field(
        None, description="use exactly these demonstrations, in this order (no sampling)")
    label_words: list[list[str]] | None = Field(
        None, description="words the demonstrations show, one list per class, used in turn "
                          "(the k-th demonstration of a class shows word k mod the list's "
                          "length); separate from the scored label_words; null: each class's "
                          "first scored word")


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
    test_sampling: TestSampling = Field(
        "random", description="how test_size is drawn: random, or stratified (test_size / "
                              "classes examples of every class)")
    template: str = Field("{text} It was {label}.", description="clean template of queries (and "
                          "of demonstrations unless demonstration_template is set)")
    demonstration_template: str | None = Field(
        None, description="clean template of demonstrations when they are written unlike "
                          "queries, e.g. '\"{text}\" It was \"{label}\";'; null: template")
    label_words: list[list[str]] = Field(
        [["bad"], ["good", "great", "wonderful"]],
        description="verbalizer: the words scored per class; a demonstration shows the first "
                    "unless demonstrations.label_words or a fixed demonstration's label_word "
                    "says otherwise")
    separator: str = Field("\n", description="written after every demonstration")
    final_separator: str | None = Field(
        None, description="written after the last demonstration instead of separator (right "
                          "before the query); null: separator")
    tokenization: Tokenization = Field(
        "whole", description="how the prompt becomes token ids: whole (the demonstrations as one "
        "string, each query as one string), per-piece (every demonstration, and the query's "
        "text and template words, encoded on their own and concatenated) or query-pieces (the "
        "demonstrations as one string, the query's pieces on their own: OpenPrompt on the "
        "ICLAttack scripts)")
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


def subsample_test(test: list[Example], size: int | None, sampling: TestSampling,
                   num_labels: int, seed: int) -> list[Example]:
    """The test examples a run scores, in split order: all of them (`size` None), a seeded
    random `size`, or (`stratified`) size / num_labels of every class, so a small sample's ASR
    and CA are not driven by how many of each class the draw happened to hold."""
    if size is None:
        return list(test)
    rng = random.Random(seed)
    if sampling == "stratified":
        per_class, left = divmod(size, num_labels)
        if left:
            raise ConfigError(f"test_size: {size} does not split equally over {num_labels} "
                              f"classes; use a multiple of {num_labels} with test_sampling: "
                              "stratified")
        keep = []
        for label in range(num_labels):
            members = [i for i, e in enumerate(test) if e.label == label]
            if len(members) < per_class:
                raise ConfigError(f"test_size: stratified sampling needs {per_class} examples of "
                                  f"class {label}; the test split has {len(members)}")
            keep += rng.sample(members, per_class)
    elif size >= len(test):
        return list(test)
    else:
        keep = rng.sample(range(len(test)), size)
    return [test[i] for i in sorted(keep)]


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
        template = PromptTemplate(cfg.template, cfg.demonstration_template)
        verbalizer = Verbalizer.from_lists(cfg.label_words, cfg.aggregation)
        dataset = load_dataset(cfg.dataset)
        if dataset.num_labels != verbalizer.num_labels:
            raise ConfigError(f"label_words: {verbalizer.num_labels} classes given, data set "
                              f"'{cfg.dataset}' has {dataset.num_labels} ({dataset.label_names})")
        self.demonstrations_ = self._demonstrations(dataset.split(cfg.demonstrations.split),
                                                    verbalizer.num_labels, template)
        self.test_ = subsample_test(dataset.test, cfg.test_size, cfg.test_sampling,
                                    dataset.num_labels, cfg.seed + 1)
        self.loaded_ = self.loaded or load_icl_model(cfg, **self.trust)
        self.runtime_.place(self.loaded_.model)
        scorer = LabelScorer(self.loaded_, verbalizer, template.label_prefix, cfg.scoring,
                             cfg.batch_size, progress=self.progress,
                             tokenization=cfg.tokenization)
        self.evaluator_ = ICLEvaluator(scorer, template, cfg.separator,
                                       tuple(cfg.content_free_inputs), cfg.final_separator)
        return self

    def _demonstrations(self, pool: list[Example], num_labels: int,
                        template: PromptTemplate) -> list[Demonstration]:
        demos = self.config.demonstrations
        if demos.label_words is not None and len(demos.label_words) != num_labels:
            raise ConfigError(f"demonstrations.label_words: {len(demos.label_words)} lists given, "
                              f"one per class needed ({num_labels})")
        if demos.label_words is not None and any(not words for words in demos.label_words):
            raise ConfigError("demonstrations.label_words: give every class at least one word")
        if demos.fixed is not None:
            bad = [d.label for d in demos.fixed if d.label >= num_labels]
            if bad:
                raise ConfigError(f"demonstrations.fixed: labels {bad} are not in 0..{num_labels - 1}")
            own = [d.label_word for d in demos.fixed]
            if demos.label_words is not None and any(w is not None for w in own):
                raise ConfigError("demonstrations: give words either per fixed demonstration "
                                  "(fixed[].label_word) or per class (label_words), not both")
            examples = [Example(d.text, d.label) for d in demos.fixed]
            attacked = [d.attacked_text for d in demos.fixed]
        else:
            examples = sample_balanced(pool, demos.shots_per_class, num_labels, self.config.seed)
            own = attacked = None
        if demos.label_words is not None:
            own = cycled_label_words([e.label for e in examples], demos.label_words)
        return as_demonstrations(examples, template, own, attacked)

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
