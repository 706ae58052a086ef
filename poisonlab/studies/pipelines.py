"""Which pipeline a study cell runs: a name -> how to validate a cell's config, where its folder
is, what it is (its resolved config, for the run protocol's hash) and how to run it.

Validation is separate from running so that a study checks every cell before the first runs.
Every `run` takes the study's `ModelCache` (`cache=`); pipelines with nothing to share ignore it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class StudyPipeline:
    load: Callable[[dict[str, Any]], Any]               # validated typed config
    folder: Callable[[Any], Path]
    resolved: Callable[[Any], dict[str, Any] | None]    # None: known only when the cell runs
    run: Callable[..., dict[str, Any]]   # (config, force=, progress=, trust..., cache=)


def _data_poisoning() -> StudyPipeline:
    from poisonlab.experiment import load_run_config, run_experiment
    return StudyPipeline(lambda raw: load_run_config(base=raw), lambda c: c.run_dir,
                         lambda c: c.resolved(), _without_cache(_with_trust(run_experiment)))


def _weight_poisoning() -> StudyPipeline:
    """Release (or reuse) poisoned weights, then one victim run (poisonlab.experiment.victim)."""
    from poisonlab.experiment.victim import load_victim_config, run_victim
    return StudyPipeline(lambda raw: load_victim_config(base=raw), lambda c: c.run_dir,
                         lambda c: c.resolved(), _without_cache(run_victim))


def _repair() -> StudyPipeline:
    from poisonlab.experiment.repair import RepairCellConfig, run_repair_cell
    from poisonlab.registry import validate_config
    return StudyPipeline(
        lambda raw: validate_config(RepairCellConfig, raw, where=f"cell '{raw.get('name')}'"),
        lambda c: c.run_dir, lambda c: c.resolved(), run_repair_cell)


def _detection() -> StudyPipeline:
    """A detection defense on a victim (run folder or released model): poisonlab.defenses.
    The victim may be another study's cell, so its data and trigger are read when it runs."""
    from poisonlab.experiment.detection import DetectionConfig, run_detection
    from poisonlab.registry import validate_config

    def load(raw: dict[str, Any]) -> DetectionConfig:
        config = validate_config(DetectionConfig, raw, where="detection cell")
        config.resolved()  # validates the detector's fields
        return config
    return StudyPipeline(load, lambda c: c.result_dir, lambda c: None, run_detection)


def _generative() -> StudyPipeline:
    """Instruction tuning of a causal LM, answers generated (poisonlab.experiment.generative);
    cells that differ only in their defense share the tuned model through the study's cache."""
    from poisonlab.experiment.generative import load_generative_config, run_generative
    return StudyPipeline(lambda raw: load_generative_config(base=raw), lambda c: c.run_dir,
                         lambda c: c.resolved(), _with_trust(run_generative))


def _attack_defense() -> StudyPipeline:
    """A data-poisoning run, sanitized or not, then optionally a detector on its model
    (poisonlab.experiment.defended): one pipeline for every cell of an attack x defense grid.
    Detector cells share their model run; their result is known only once it exists."""
    from poisonlab.experiment.defended import DefendedRunConfig, run_defended
    from poisonlab.registry import validate_config

    def load(raw: dict[str, Any]) -> DefendedRunConfig:
        config = validate_config(DefendedRunConfig, raw, where=f"cell '{raw.get('name')}'")
        if config.detect is not None:
            config.detection()  # validates the detector's job
        return config
    return StudyPipeline(load, lambda c: c.run_dir,
                         lambda c: None if c.detect is not None else c.resolved(),
                         _with_trust(run_defended))


def _with_trust(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A run whose config carries its own trust settings (`model.allow_pickle`, ...): the
    command-line flags are applied to the config instead."""
    def call(config: Any, *, allow_pickle: bool = False, trust_remote_code: bool = False,
             **kwargs: Any) -> dict[str, Any]:
        if allow_pickle or trust_remote_code:
            model = config.model.model_copy(update={
                "allow_pickle": allow_pickle or config.model.allow_pickle,
                "trust_remote_code": trust_remote_code or config.model.trust_remote_code})
            config = config.model_copy(update={"model": model})
        return run(config, **kwargs)
    return call


def _without_cache(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A run that shares no models between cells: the study's cache is not passed on."""
    def call(config: Any, *, cache: Any = None, **kwargs: Any) -> dict[str, Any]:
        return run(config, **kwargs)
    return call


PIPELINES: dict[str, Callable[[], StudyPipeline]] = {
    "data-poisoning": _data_poisoning, "weight-poisoning": _weight_poisoning,
    "repair": _repair, "detection": _detection, "attack-defense": _attack_defense,
    "generative": _generative}
