"""Experiment-tracker pass-through: a run's training loss and learning rate per optimizer step,
its per-epoch log and its final metrics, sent to TensorBoard, Weights & Biases or MLflow.

Off by default (`training.report_to: []`); the trackers are optional extras
(`pip install 'poisonlab[tracking]'`) and accelerate's tracker classes do the talking. A tracker
is a copy for watching runs live and comparing them in a familiar tool; the run folder stays the
record. `check_trackers` runs before a run folder is created, so a tracker whose library is
missing fails the run before anything is written. Only the main process of a multi-process job
opens trackers."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from poisonlab.errors import ConfigError

TrackerName = Literal["tensorboard", "wandb", "mlflow"]
# the package whose presence makes each tracker usable (torch's SummaryWriter needs tensorboard)
TRACKER_LIBRARIES: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb",
                                     "mlflow": "mlflow"}
PROJECT = "poisonlab"  # W&B project / MLflow experiment, unless WANDB_PROJECT etc. say otherwise


def _tensorboard(run_name: str, folder: Path) -> Any:
    from accelerate.tracking import TensorBoardTracker
    return TensorBoardTracker("tensorboard", folder)  # <run folder>/tensorboard/


def _wandb(run_name: str, folder: Path) -> Any:
    from accelerate.tracking import WandBTracker
    return WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), name=run_name)


def _mlflow(run_name: str, folder: Path) -> Any:
    from accelerate.tracking import MLflowTracker
    return MLflowTracker(experiment_name=PROJECT, run_name=run_name)


# name -> factory(run name, run folder) of an accelerate GeneralTracker (not yet started)
TRACKER_FACTORIES: dict[str, Callable[[str, Path], Any]] = {
    "tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


def check_trackers(names: Sequence[str], field: str = "training.report_to") -> None:
    """A ConfigError naming `field` when a listed tracker's library is not installed."""
    missing = [name for name in names
               if importlib.util.find_spec(TRACKER_LIBRARIES[name]) is None]
    if missing:
        packages = " ".join(TRACKER_LIBRARIES[name] for name in missing)
        one = len(missing) == 1
        raise ConfigError(f"field '{field}': {', '.join(missing)} "
                          f"{'needs the package' if one else 'need the packages'} {packages}, "
                          f"not installed; pip install 'poisonlab[tracking]' (or {packages}), "
                          f"or remove {'it' if one else 'them'} from the list")


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested config as dotted scalar hyperparameters (what every tracker accepts)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
        elif value is not None:
            out[f"{prefix}{key}"] = str(value)
    return out


class Tracking:
    """The trackers one run reports to (none: every call does nothing). As a context manager it
    finishes them on the way out, failed run or not, so no tracker run is left open."""

    def __init__(self, trackers: Sequence[Any] = ()):
        self.trackers = list(trackers)
        self.last_step = 0

    @classmethod
    def open(cls, names: Sequence[str], *, run_name: str, folder: str | Path,
             config: dict[str, Any]) -> "Tracking":
        """Start the named trackers for a run kept in `folder`, with its resolved config as
        hyperparameters."""
        check_trackers(names)
        trackers = [TRACKER_FACTORIES[name](run_name, Path(folder)) for name in names]
        for tracker in trackers:
            tracker.start()
            tracker.store_init_configuration(_flat(config))
        return cls(trackers)

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        """The numeric `values` at `step` (default: the last step logged, e.g. for final
        metrics); others (an ASR of None) are left out."""
        self.last_step = self.last_step if step is None else step
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        for tracker in self.trackers:
            tracker.log(numbers, step=self.last_step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()
