"""Studies: a grid of runs (cells) from one YAML file, resumable, reported as a table and a plot."""

from poisonlab.studies.runner import StudyConfig, load_study, run_study

__all__ = ["StudyConfig", "load_study", "run_study"]
