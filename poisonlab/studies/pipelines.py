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
