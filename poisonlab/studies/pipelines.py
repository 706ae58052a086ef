"""Which pipeline a study cell runs: a name -> function(config dict, force, progress) -> metrics.

Each pipeline validates the merged cell config against its own schema, so studies stay generic."""

from __future__ import annotations

from typing import Any, Callable

PipelineFn = Callable[[dict[str, Any], bool, bool], dict[str, Any]]
PIPELINES: dict[str, PipelineFn] = {}


def pipeline(name: str) -> Callable[[PipelineFn], PipelineFn]:
    def register(fn: PipelineFn) -> PipelineFn:
        PIPELINES[name] = fn
        return fn
    return register


@pipeline("data-poisoning")
def _data_poisoning(config: dict[str, Any], force: bool, progress: bool) -> dict[str, Any]:
    from poisonlab.experiment import load_run_config, run_experiment
    return run_experiment(load_run_config(base=config), force=force, progress=progress)


@pipeline("weight-poisoning")
def _weight_poisoning(config: dict[str, Any], force: bool, progress: bool) -> dict[str, Any]:
    """Release (or reuse) poisoned weights, then one victim run (poisonlab.experiment.victim)."""
    from poisonlab.experiment.victim import load_victim_config, run_victim
    return run_victim(load_victim_config(base=config), force=force, progress=progress)


@pipeline("repair")
def _repair(config: dict[str, Any], force: bool, progress: bool) -> dict[str, Any]:
    from poisonlab.defenses.repair_pipeline import run_repair_cell
    return run_repair_cell(config, force=force, progress=progress)


@pipeline("detection")
def _detection(config: dict[str, Any], force: bool, progress: bool) -> dict[str, Any]:
    """A detection defense on a victim (run folder or released model): poisonlab.defenses."""
    from poisonlab.defenses.evaluation import DetectionConfig, run_detection
    from poisonlab.registry import validate_config
    return run_detection(validate_config(DetectionConfig, config, where="detection cell"),
                         force=force, progress=progress)
