"""One cell of an attack-defense grid: a data-poisoning run (with or without a training-set
defense, `sanitize:`), optionally followed by a detection defense (`detect:`) on the model it
trained.

Cells that differ only in their detector share one trained model: the model run is kept in a
folder named by its config hash (`models_dir`), trained by the first cell that needs it and
reused by the others, so "no defense", ONION, STRIP, ... on the same attack train once. Every
cell also writes its own result folder (`output_dir/name`): a detector's result folder
(poisonlab.experiment.detection) or, without a detector, a record of the model run's metrics
with its folder (`model_run`). Model runs always keep their weights, which detectors load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from poisonlab.defenses.base import DETECTORS
from poisonlab.experiment.config import RunConfig, derive_seeds
from poisonlab.experiment.detection import DetectionConfig, run_detection
from poisonlab.experiment.pipeline import run_experiment
from poisonlab.experiment.rundir import RunSlot, config_hash
from poisonlab.models.cache import ModelCache
from poisonlab.registry import component_field

DEFENDED_FIELDS = ("detect", "detect_data", "models_dir")


class DefendedRunConfig(RunConfig):
    detect: component_field(DETECTORS) | None = Field(
        None, description="detection defense on the trained model: {name: onion|strip|rap|psim, "
                          "<field>: <value>}; null: none")
    detect_data: dict[str, Any] = Field(
        default_factory=dict, description="data fields of the detector's defender data and test "
                                          "set, merged over `data` (e.g. test_size: 100)")
    models_dir: str | None = Field(
        None, description="where the model runs shared by cells are kept; null: 'models' beside "
                          "output_dir")

    @model_validator(mode="after")
    def _derive_detector_seed(self) -> DefendedRunConfig:
        derive_seeds(self.seed, [self.detect])
        return self

    def model_run(self) -> RunConfig:
        """The data-poisoning run whose model this cell measures (or defends), named by what it
        is: cells with the same run and different detectors get the same folder."""
        raw = self.model_dump(mode="json", exclude=set(DEFENDED_FIELDS))
        raw["save_weights"] = True
        attack = self.attack.name if self.attack else "clean"
        raw["name"] = f"{Path(self.data.name).name}-{attack}-{config_hash(raw)}"
        raw["output_dir"] = self.models_dir or str(Path(self.output_dir).parent / "models")
        return RunConfig.model_validate(raw)

    def detection(self) -> DetectionConfig:
        """The detector's job on the model run (for a cell with `detect`)."""
        return DetectionConfig(name=self.name, output_dir=self.output_dir,
                               victim=str(self.model_run().run_dir), defense=self.detect,
                               data=self.detect_data, seed=self.seed, runtime=self.runtime)


def run_defended(config: DefendedRunConfig, *, force: bool = False, progress: bool = True,
                 cache: ModelCache | None = None) -> dict[str, Any]:
    """Train (or reuse) the cell's model run, then apply its detector, or record the run's
    metrics in the cell's folder. `force` reruns the cell, not a shared model run (whose folder
    name holds its config hash, so it is never stale). The detector loads the model with the
    config's own trust settings (`model.allow_pickle`, `model.trust_remote_code`)."""
    run = config.model_run()
    run_metrics = run_experiment(run, progress=progress)
    if config.detect is not None:
        return run_detection(config.detection(), force=force, progress=progress,
                             allow_pickle=run.model.allow_pickle,
                             trust_remote_code=run.model.trust_remote_code, cache=cache)
    slot = RunSlot(config.run_dir, config.resolved(), kind="attack-defense", seed=config.seed)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    with slot.building() as result:
        result.finish({**run_metrics, "model_run": str(run.run_dir)})
        return result.read_metrics()
