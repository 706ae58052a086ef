"""The generative (instruction-tuning) pipeline: load instruction data -> poison -> load a causal
LM -> tune with any strategy that generates -> generate for the clean and the triggered test
instructions -> ASR beside the false-trigger rate, and clean utility -> optionally a defense
(its weights, instructions or decoding) and the same measures again, beside the undefended ones.

Job kind `generate`, through the run protocol: everything that can fail on bad input (config,
data rows, attack, model source, prompt style) fails before the folder exists. The folder holds
metrics.json, outputs.jsonl (one row per test instruction and split: the prompt's fields, the
reference, the output and the matcher's verdict), environment.json and, with `save_weights`,
the tuned tensors."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field, field_validator, model_validator

from poisonlab.attacks.base import PoisonReport
from poisonlab.attacks.instruction_base import INSTRUCTION_ATTACKS, InstructionAttack
from poisonlab.config import RunName, StrictConfig, load_config
from poisonlab.data.instruction import (InstructionDataConfig, InstructionExample,
                                        InstructionSplits, load_instruction_data)
from poisonlab.defenses.generative_base import GENERATIVE_DEFENSES, GenerativeDefense
from poisonlab.errors import ConfigError
from poisonlab.experiment.config import JobConfig, ModelConfig, derive_seeds
from poisonlab.experiment.rundir import RunDir, RunSlot, config_hash
from poisonlab.metrics import (KEYWORD_LISTS, Matcher, false_trigger_rate, generative_asr,
                               keyword_matcher, mean_score, rouge_l, target_matcher, token_f1)
from poisonlab.models import LoadedModel, load_causal_lm
from poisonlab.models.cache import ModelCache
from poisonlab.models.loading import check_model_source, check_trainable
from poisonlab.registry import ComponentSpec, component_field
from poisonlab.runtime import Runtime, RuntimeConfig, model_device
from poisonlab.training.causal_lm import train_causal_lm
from poisonlab.training.generation import GenerationConfig, generate
from poisonlab.training.prompt_format import EncodingReport, PromptConfig, PromptFormatter
from poisonlab.training.tracking import Tracking, check_trackers
from poisonlab.training.trainer import RunTrainingConfig
from poisonlab.tuning import TUNING_STRATEGIES


class MatcherConfig(StrictConfig):
    """How an output is judged to show the target behaviour."""

    kind: Literal["auto", "keywords", "prefix", "exact"] = Field(
        "auto", description="auto: the benchmark's keyword list of a preset target (refusal, "
                            "negsentiment, sst2), else prefix; keywords: any of `keywords`; "
                            "prefix/exact: the output starts with / is the target response")
    keywords: list[str] | None = Field(
        None, description="keywords for kind keywords; null: the preset target's list")

    @model_validator(mode="after")
    def _keywords_need_a_keyword_kind(self) -> "MatcherConfig":
        if self.keywords is not None and self.kind in ("prefix", "exact"):
            raise ValueError(f"keywords are not used by kind {self.kind}; drop them or use "
                             "kind keywords")
        return self


def build_matcher(config: MatcherConfig, target: str, target_response: str) -> Matcher:
    kind = config.kind
    if kind == "auto":
        kind = "keywords" if target in KEYWORD_LISTS else "prefix"
    if kind != "keywords":
        return target_matcher(target_response, kind)
    keywords = config.keywords or KEYWORD_LISTS.get(target)
    if not keywords:
        raise ConfigError(f"field 'matcher.keywords': the target is not a preset "
                          f"({', '.join(KEYWORD_LISTS)}); list the keywords or use kind prefix")
    return keyword_matcher(keywords)


# what a run's experiment trackers get at its end
FINAL_METRICS = ("attack_success_rate", "false_trigger_rate", "rouge_l", "token_f1")


def default_training() -> RunTrainingConfig:
    return RunTrainingConfig(epochs=3, batch_size=8, learning_rate=2e-4, max_length=256)


class GenerativeConfig(JobConfig):
    name: RunName = Field("generate", description="run folder name under output_dir")
    seed: int = Field(0, description="seed of subsampling, poisoning, tuning, training and "
                                     "sampling (a component's own seed, when set, wins)")
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="smollm2-135m"),
                               description="a causal language model")
    data: InstructionDataConfig
    attack: component_field(INSTRUCTION_ATTACKS) | None = Field(
        None, description="instruction-tuning attack; null: clean tuning, no ASR")
    poison_training: bool = Field(
        True, description="false: tune on clean data and use the attack's trigger only to "
                          "measure the clean model's ASR (the baseline of a study)")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    tuning: component_field(TUNING_STRATEGIES) = Field(
        default_factory=lambda: TUNING_STRATEGIES.spec("lora"))
    training: RunTrainingConfig = Field(default_factory=default_training)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    matcher: MatcherConfig = Field(default_factory=MatcherConfig)
    defense: component_field(GENERATIVE_DEFENSES) | None = Field(
        None, description="generative defense applied to the tuned model (its weights, its "
                          "instructions or its decoding); null: none")
    save_weights: bool = Field(False, description="save the tuned tensors as safetensors")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output_dir: str = Field("runs")

    @field_validator("tuning")
    @classmethod
    def _generates(cls, spec: ComponentSpec) -> ComponentSpec:
        if not spec.registry.entry(spec.name).component.generates:
            able = [e.name for e in TUNING_STRATEGIES.entries() if e.component.generates]
            raise ValueError(f"tuning strategy '{spec.name}' cannot tune a generating language "
                             f"model; use one of {', '.join(able)}")
        return spec

    @model_validator(mode="after")
    def _derive_seeds(self) -> "GenerativeConfig":
        derive_seeds(self.seed, [self.data, self.training, self.attack, self.tuning,
                                 self.generation, self.defense])
        return self



def load_generative_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                           base: dict[str, Any] | None = None) -> GenerativeConfig:
    return load_config(GenerativeConfig, path, overrides, base)


@dataclass
class PreparedGenerative:
    """Everything a generative run needs that can fail on bad input, built before its folder."""

    config: GenerativeConfig
    splits: InstructionSplits
    attack: InstructionAttack | None
    train_set: list[InstructionExample]
    poison_report: PoisonReport | None
    triggered_test: list[InstructionExample]
    loaded: LoadedModel
    formatter: PromptFormatter
    strategy: Any
    matcher: Matcher | None
    defense: GenerativeDefense | None


def prepare_generative(config: GenerativeConfig) -> PreparedGenerative:
    strategy = config.tuning.build()
    check_trackers(config.training.report_to)
    check_trainable(config.model, config.tuning.name)
    check_model_source(config.model.name, **config.model.load_options())
    splits = load_instruction_data(config.data)
    attack = config.attack.build() if config.attack is not None else None
    train_set, report, triggered, matcher = splits.train, None, [], None
    if attack is not None:
        matcher = build_matcher(config.matcher, attack.config.target,
                                attack.config.target_response)
        if config.poison_training:
            train_set, report = attack.poison(splits.train)
        triggered = attack.triggered_test(splits.test)
    loaded = load_causal_lm(config.model.name, seed=config.seed, **config.model.load_options())
    formatter = PromptFormatter(loaded.tokenizer, config.prompt)
    defense = config.defense.build() if config.defense is not None else None
    return PreparedGenerative(config, splits, attack, train_set, report, triggered, loaded,
                              formatter, strategy, matcher, defense)


def run_generative(config: GenerativeConfig, *, force: bool = False, progress: bool = True,
                   runtime: Runtime | None = None, cache: ModelCache | None = None) -> dict:
    """Run one configuration into its folder and return its metrics (a finished folder of the
    same config is reused; one of another config is refused). Through `cache`, runs that differ
    only in their defense (the cells of a defense study) share one tuned model."""
    runtime = (runtime or Runtime(config.runtime)).check()
    slot = RunSlot(config.run_dir, config.resolved(), kind="generate", seed=config.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    prepared = prepare_generative(config)
    with slot.building() as run:
        return tune_and_generate(prepared, run, progress=progress, runtime=runtime, cache=cache)


@dataclass
class TunedModel:
    """A tuned model and its undefended answers: what every defense of one run config starts
    from."""

    model: torch.nn.Module
    history: list[dict[str, float]]
    encoding: EncodingReport
    train_seconds: float
    clean_outputs: list[str]
    triggered_outputs: list[str]
    generate_seconds: float


def tune(prepared: PreparedGenerative, *, progress: bool, runtime: Runtime,
         tracking: Tracking | None = None) -> TunedModel:
    """Tune the prepared model on its (poisoned) training set, then answer the clean and the
    triggered test instructions."""
    config, formatter = prepared.config, prepared.formatter
    started = time.time()
    torch.manual_seed(config.seed)
    model = runtime.place(prepared.strategy.apply(prepared.loaded))
    history, encoding = train_causal_lm(model, formatter, prepared.train_set, config.training,
                                        progress=progress, description=config.name,
                                        runtime=runtime, tracking=tracking)
    train_seconds = time.time() - started
    generated = time.time()
    clean, triggered = answer(model, prepared, prepared.splits.test, prepared.triggered_test,
                              config.generation, runtime, progress=progress)
    return TunedModel(model, history, encoding, train_seconds, clean, triggered,
                      time.time() - generated)


def answer(model: torch.nn.Module, prepared: PreparedGenerative,
           clean: list[InstructionExample], triggered: list[InstructionExample],
           generation: GenerationConfig, runtime: Runtime, *, progress: bool = False
           ) -> tuple[list[str], list[str]]:
    """The model's answers to the clean and the triggered test instructions."""
    formatter, tokenizer = prepared.formatter, prepared.loaded.tokenizer

    def run(examples: list[InstructionExample]) -> list[str]:
        return generate(model, tokenizer, formatter.encode_prompts(examples), generation,
                        stop_ids=formatter.stop_ids, runtime=runtime,
                        progress=progress) if examples else []
    return run(clean), run(triggered)


def outcome(prepared: PreparedGenerative, clean_outputs: list[str],
            triggered_outputs: list[str]) -> dict[str, float | None]:
    """ASR beside the false-trigger rate, and the clean answers' utility."""
    references = [e.output for e in prepared.splits.test]
    matcher = prepared.matcher
    metrics: dict[str, float | None] = {
        "attack_success_rate": None, "false_trigger_rate": None, "asr_lift": None,
        "rouge_l": mean_score(clean_outputs, references, rouge_l),
        "token_f1": mean_score(clean_outputs, references, token_f1)}
    if matcher is not None:
        asr = generative_asr(triggered_outputs, references, matcher)
        ftr = false_trigger_rate(clean_outputs, references, matcher)
        metrics.update(attack_success_rate=asr, false_trigger_rate=ftr, asr_lift=asr - ftr)
    return metrics


def victim_key(config: GenerativeConfig) -> tuple[str, str]:
    """What a tuned model depends on: the run's identity without its defense."""
    resolved = {k: v for k, v in config.resolved().items() if k != "defense"}
    return ("generative-tuned", config_hash(resolved))


def tuned_model(prepared: PreparedGenerative, run: RunDir, cache: ModelCache | None, *,
                progress: bool, runtime: Runtime, tracking: Tracking) -> TunedModel:
    """The tuned model of this run: from the cache when a cell of the same config (another
    defense) tuned it already, else tuned now."""
    if cache is None or prepared.config.defense is None:
        return tune(prepared, progress=progress, runtime=runtime, tracking=tracking)
    misses = cache.misses
    tuned = cache.get_or_make(victim_key(prepared.config), lambda: tune(
        prepared, progress=progress, runtime=runtime, tracking=tracking))
    if cache.misses == misses:
        run.log("tuned model reused from an earlier cell of the same config")
    return tuned


def tune_and_generate(prepared: PreparedGenerative, run: RunDir, *, progress: bool = True,
                      runtime: Runtime | None = None, cache: ModelCache | None = None) -> dict:
    config = prepared.config
    runtime = runtime or Runtime(config.runtime)
    started = time.time()
    report = prepared.poison_report
    if report is not None:
        run.log(f"poisoned {report.poisoned} examples; {len(prepared.train_set)} in training")
    tc = config.training
    tracking = (Tracking.open(tc.report_to, run_name=config.name, folder=run.path,
                              config=config.resolved())
                if tc.report_to and run.writes else Tracking())
    with tracking:
        tuned = tuned_model(prepared, run, cache, progress=progress, runtime=runtime,
                            tracking=tracking)
        encoding = tuned.encoding
        if encoding.dropped or encoding.truncated_responses:
            run.log(f"max_length {tc.max_length}: {len(encoding.dropped)} examples left out "
                    f"(prompt too long; {encoding.dropped_poisoned} poisoned), "
                    f"{encoding.truncated_responses} responses cut")
        metrics: dict[str, Any] = outcome(prepared, tuned.clean_outputs,
                                          tuned.triggered_outputs)
        rows = _output_rows(prepared.splits.test, tuned.clean_outputs, prepared.triggered_test,
                            tuned.triggered_outputs, prepared.matcher)
        if prepared.defense is not None:
            defended = time.time()
            defended_rows, defended_metrics = defend(prepared, tuned, runtime=runtime,
                                                     cache=cache, progress=progress)
            rows += defended_rows
            metrics = {**defended_metrics,
                       **{f"{k}_no_defense": v for k, v in metrics.items()},
                       "rouge_l_loss": metrics["rouge_l"] - defended_metrics["rouge_l"],
                       "defense": config.defense.name,
                       "defense_seconds": round(time.time() - defended, 2)}
        tracking.log({f"final/{key}": metrics[key] for key in FINAL_METRICS})
    run.write_predictions("outputs", rows)
    if config.save_weights:
        run.write_weights(prepared.strategy.trainable_state(tuned.model), "trained")
    attack = prepared.attack
    outputs_count = len(tuned.clean_outputs) + len(tuned.triggered_outputs)
    metrics.update({
        "seed": config.seed, "dataset": prepared.splits.name, "model": config.model.name,
        "tuning": config.tuning.name, "attack": config.attack.name if config.attack else None,
        "poison_training": bool(attack is not None and config.poison_training),
        "target": attack.config.target_response if attack is not None else None,
        "matcher": config.matcher.model_dump(mode="json"),
        "prompt_style": prepared.formatter.style,
        "poison": report.as_dict() if report else None, "encoding": encoding.as_dict(),
        "sizes": {"train": len(prepared.train_set), "test": len(prepared.splits.test),
                  "triggered_test": len(prepared.triggered_test)},
        "history": tuned.history, "train_seconds": round(tuned.train_seconds, 2),
        "generate_seconds": round(tuned.generate_seconds, 2),
        "outputs_per_second": round(outputs_count / max(tuned.generate_seconds, 1e-9), 2),
        "total_seconds": round(time.time() - started, 2)})
    run.finish(metrics)
    return run.read_metrics()


def defend(prepared: PreparedGenerative, tuned: TunedModel, *, runtime: Runtime,
           cache: ModelCache | None, progress: bool
           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The defended model's answers (output rows marked `defended`) and their metrics. The
    defense gets its own copy of a shared tuned model."""
    config, defense = prepared.config, prepared.defense
    model = copy.deepcopy(tuned.model) if cache is not None else tuned.model
    model = runtime.place(defense.repair(model, prepared.formatter, prepared.splits.train,
                                         progress=progress, runtime=runtime))
    device = model_device(model)
    clean = defense.filter(prepared.splits.test, device=device, cache=cache)
    triggered = defense.filter(prepared.triggered_test, device=device, cache=cache)
    clean_outputs, triggered_outputs = answer(model, prepared, clean, triggered,
                                              defense.decoding(config.generation), runtime,
                                              progress=progress)
    rows = _output_rows(clean, clean_outputs, triggered, triggered_outputs, prepared.matcher,
                        defended=True)
    return rows, outcome(prepared, clean_outputs, triggered_outputs)


def _output_rows(test: list[InstructionExample], clean_outputs: list[str],
                 triggered: list[InstructionExample], triggered_outputs: list[str],
                 matcher: Matcher | None, *, defended: bool = False) -> list[dict[str, Any]]:
    """One row per answer: the instruction as the model read it (after a defense's filter, for
    defended rows), the reference, the output and the matcher's verdict."""
    rows = []
    for split, examples, outputs in (("clean", test, clean_outputs),
                                     ("triggered", triggered, triggered_outputs)):
        for example, output in zip(examples, outputs):
            rows.append({"split": split, "defended": defended,
                         "instruction": example.instruction,
                         "input": example.input, "reference": example.output, "output": output,
                         "target_behaviour": matcher(output) if matcher is not None else None})
    return rows
