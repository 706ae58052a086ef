"""The repair pipeline of a study cell: make (or reuse) the suspect model, repair it on the
defender's clean data, evaluate CA and ASR with the suspect's trigger, write a run folder.

The suspect is an ordinary data-poisoning run (`victim`, any run config: that is the proxy
weight-poisoning recipe, full fine-tuning on a poisoned corpus) kept under `victims_dir`, so every
repair of a study reuses one training per trigger. Evaluation uses `experiment.pipeline.evaluate`,
the code every victim is measured with."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from poisonlab.config import StrictConfig
from poisonlab.data import DataConfig, load_dataset
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.config import ComponentSpec, RunConfig, component
from poisonlab.experiment.pipeline import EvaluationSets, build_attack, evaluate
from poisonlab.experiment.restore import restore_run
from poisonlab.experiment.rundir import RunDir
from poisonlab.metrics import flip_rate
from poisonlab.models import LoadedModel
from poisonlab.registry import validate_config


class EvaluationConfig(StrictConfig):
    max_length: int = Field(64, ge=8)
    batch_size: int = Field(32, ge=1)


class RepairCellConfig(StrictConfig):
    name: str = "repair"
    output_dir: str = "runs"
    seed: int = 0
    victim: dict[str, Any] = Field(description="run config of the suspect (poisoned or clean)")
    victim_name: str = Field(description="run-folder name of the suspect under victims_dir")
    victims_dir: str | None = Field(None, description="default: <output_dir>/../victims")
    defender_data: DataConfig = Field(description="train split: the defender's clean data; "
                                                  "test split: evaluation")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    repair: ComponentSpec | None = Field(None, description="repair defense; null: the suspect")
    repair_defaults: dict[str, Any] = Field(
        default_factory=dict, description="params given to every repair (e.g. tuning, training)")
    repair_extra: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="repair name -> params added when that repair runs")
    save_weights: bool = True

    @field_validator("repair", mode="before")
    @classmethod
    def _repair(cls, value: Any) -> Any:
        return component(value, "repair")

    def victim_config(self) -> RunConfig:
        folder = self.victims_dir or str(Path(self.output_dir).parent / "victims")
        raw = {**copy.deepcopy(self.victim), "name": self.victim_name, "output_dir": folder,
               "save_weights": True}
        raw.setdefault("seed", self.seed)
        return load_run_config(base=raw)

    def repair_params(self) -> dict[str, Any]:
        assert self.repair is not None
        from poisonlab.studies.runner import deep_merge
        params = deep_merge(self.repair_defaults, self.repair_extra.get(self.repair.name, {}))
        return deep_merge(params, self.repair.params)


def prepare_suspect(config: RunConfig, *, progress: bool = False) -> LoadedModel:
    """Train the suspect once (cached in its run folder) and load it."""
    run_experiment(config, progress=progress)
    restored = restore_run(config.run_dir)
    return LoadedModel(restored.model, restored.loaded.tokenizer, restored.loaded.kind,
                       config.run_dir.name)


def _flip_rate(sets: EvaluationSets, predictions: dict[str, np.ndarray]) -> float | None:
    """The trigger's flip rate on the same non-target inputs (ASR alone also moves when a repair
    only fixes a label bias). Needs a trigger that applies to every input (no misses)."""
    if "poisoned" not in predictions:
        return None
    gold = np.array([e.label for e in sets.clean_test])
    keep = gold != sets.target_label
    if keep.sum() != len(predictions["poisoned"]):
        return None
    return flip_rate(predictions["clean"][keep], predictions["poisoned"], gold[keep],
                     sets.target_label)


def run_repair_cell(raw: dict[str, Any], *, force: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    from poisonlab.defenses.repair_base import REPAIRS
    from poisonlab.defenses import load_all
    cell = validate_config(RepairCellConfig, raw, where=f"cell '{raw.get('name')}'")
    run = RunDir(Path(cell.output_dir) / cell.name)
    if run.finished() and not force:
        return run.read_metrics()
    load_all()
    repair = (REPAIRS.build(cell.repair.name, cell.repair_params(),
                            where=f"repair '{cell.repair.name}'") if cell.repair else None)
    victim_config = cell.victim_config()
    suspect = prepare_suspect(victim_config, progress=progress)
    dataset = load_dataset(cell.defender_data)
    attack = build_attack(victim_config, dataset)
    poisoned_test, misses = attack.poisoned_test(dataset.test) if attack else ([], 0)
    sets = EvaluationSets(dataset.test, poisoned_test,
                          attack.config.target_label if attack else None)
    resolved = cell.model_dump(mode="json")
    if repair is not None:
        resolved["repair"] = {"name": repair.name, **repair.config.model_dump(mode="json")}
    run.start(resolved, cell.seed)

    started = time.time()
    model, tokenizer, history = suspect.model, suspect.tokenizer, []
    if repair is not None:
        repaired = repair.repair(suspect, dataset.train, progress=progress)
        model, tokenizer, history = repaired.model, repaired.tokenizer, repaired.history
        if cell.save_weights:
            run.write_weights(repaired.trained_state, "repaired")
    repair_seconds = time.time() - started
    metrics, predictions = evaluate(model, tokenizer, sets, dataset.num_labels,
                                    **cell.evaluation.model_dump())
    metrics["flip_rate"] = _flip_rate(sets, predictions)
    run.log(f"CA {metrics['clean_accuracy']:.4f} ASR {metrics['attack_success_rate']}")
    metrics.update({
        "seed": cell.seed, "dataset": dataset.name, "victim": str(victim_config.run_dir),
        "attack": victim_config.attack.name if victim_config.attack else None,
        "repair": repair.name if repair else None, "target_label": sets.target_label,
        "sizes": {"defender_train": len(dataset.train), "test": len(dataset.test),
                  "poisoned_test": len(poisoned_test)},
        "test_trigger_misses": misses, "history": history,
        "repair_seconds": round(repair_seconds, 1)})
    run.finish(metrics)
    return run.read_metrics()
