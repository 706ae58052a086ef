"""Experiments: the config schema, the pipeline (poison -> tune -> evaluate), run folders."""

from poisonlab.experiment.config import RunConfig, load_run_config
from poisonlab.experiment.pipeline import run_experiment

__all__ = ["RunConfig", "load_run_config", "run_experiment"]
