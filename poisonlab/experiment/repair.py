"""The repair pipeline of a study cell: make (or reuse) the suspect model, repair it on the
defender's clean data, evaluate CA and ASR with the suspect's trigger, write a run folder.

The suspect is an ordinary data-poisoning run (`victim`, any run config: that is the proxy
weight-poisoning recipe, full fine-tuning on a poisoned corpus) kept under `victims_dir`, so every
repair of a study reuses one training per trigger. Evaluation uses `experiment.measure.evaluate`,
the code every victim is measured with. The cell's `runtime:` section places the suspect and runs
the evaluation (and the repair's training, for a repair that takes a runtime); a suspect this
cell trains inherits it unless its own config sets one."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.config import RunName, StrictConfig, deep_merge
from poisonlab.data import DataConfig, load_dataset
from poisonlab.data.fingerprint import source_fingerprints
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.experiment.config import JobConfig, RunConfig, derive_seeds
from poisonlab.experiment.measure import EvaluationSets, evaluate
from poisonlab.experiment.pipeline import build_attack
from poisonlab.experiment.restore import restore_run, trained_run_config
from poisonlab.experiment.rundir import RunSlot
from poisonlab.metrics import flip_rate
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.registry import component_field, validate_config
from poisonlab.runtime import Runtime, RuntimeConfig


class EvaluationConfig(StrictConfig):
    max_length: int = Field(64, ge=8)
    batch_size: int = Field(32, ge=1)


class RepairCellConfig(JobConfig):
    name: RunName = "repair"
    output_dir: str = "runs"
    seed: int = Field(0, description="seed of the suspect's training and of the defender's "
                                     "data subsample (unless they set their own)")
    victim: dict[str, Any] | None = Field(
        None, description="run config of the suspect (poisoned or clean), trained once")
    victim_name: RunName | None = Field(None, description="run-folder name of the suspect under "
                                                      "victims_dir")
    victims_dir: str | None = Field(None, description="default: <output_dir>/../victims")
    attack: component_field(DATA_ATTACKS) | None = Field(
        None, description="the trigger evaluated on the defender's test split; null: the "
                          "suspect's own attack (a clean suspect names the trigger here)")
    suspect: str | None = Field(
        None, description="instead of victim: a finished run folder whose model is repaired as "
                          "is (loaded with the caller's trust settings, never the folder's)")
    defender_data: DataConfig = Field(description="train split: the defender's clean data; "
                                                  "test split: evaluation")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    repair: component_field(REPAIRS) | None = Field(
        None, description="repair defense; null: the suspect (its params are merged over "
                          "repair_defaults and repair_extra)")
    repair_defaults: dict[str, Any] = Field(
        default_factory=dict, description="params given to every repair (e.g. tuning, training)")
    repair_extra: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="repair name -> params added when that repair runs")
    save_weights: bool = True
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="device, mixed precision, accumulation, checkpointing of the cell (and of a "
                    "suspect it trains); default values are not part of the identity")

    @model_validator(mode="before")
    @classmethod
    def _merge_repair(cls, values: Any) -> Any:
        """The repair that runs: repair_defaults, then repair_extra[<name>], then its own
        params (so the recorded config says exactly what ran)."""
        if not isinstance(values, dict) or values.get("repair") is None:
            return values
        spec = values["repair"]
        spec = {"name": spec} if isinstance(spec, str) else spec
        if isinstance(spec, dict) and "name" in spec:
            merged = deep_merge(values.get("repair_defaults") or {},
                                (values.get("repair_extra") or {}).get(spec["name"], {}))
            values = {**values, "repair": deep_merge(merged, spec)}
        return values

    @model_validator(mode="after")
    def _one_suspect(self) -> "RepairCellConfig":
        if (self.suspect is None) == (self.victim is None or self.victim_name is None):
            raise ValueError("give either 'suspect' (a finished run folder) or 'victim' and "
                             "'victim_name' (a suspect to train)")
        derive_seeds(self.seed, [self.defender_data])
        return self

    def victim_config(self) -> RunConfig:
        """The run config of the suspect: trained by this cell (victim) or read from the
        suspect folder."""
        if self.suspect is not None:
            return trained_run_config(self.suspect)
        folder = self.victims_dir or str(Path(self.output_dir).parent / "victims")
        raw = {**copy.deepcopy(self.victim), "name": self.victim_name, "output_dir": folder,
               "save_weights": True}
        raw.setdefault("seed", self.seed)
        raw.setdefault("runtime", self.runtime.model_dump(mode="json"))
        return load_run_config(base=raw)

    def resolved(self) -> dict[str, Any]:
        """The cell with every default filled in (validates the suspect's run config too)."""
        if self.suspect is None:
            self.victim_config()
        return super().resolved()


def prepare_suspect(config: RunConfig, *, progress: bool = False) -> LoadedModel:
    """Train the suspect once (cached in its run folder, on its config's runtime) and load it
    (with its own config's trust settings: this config is the caller's)."""
    run_experiment(config, progress=progress)
    return load_suspect(config.run_dir, allow_pickle=config.model.allow_pickle,
                        trust_remote_code=config.model.trust_remote_code)


def load_suspect(folder: str | Path, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False) -> LoadedModel:
    """A finished run folder's model, loaded with the caller's trust settings."""
    restored = restore_run(folder, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    return LoadedModel(restored.model, restored.loaded.tokenizer, restored.loaded.kind,
                       Path(folder).name)


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


def run_repair_cell(raw: dict[str, Any] | RepairCellConfig, *, force: bool = False,
                    progress: bool = False, allow_pickle: bool = False,
                    trust_remote_code: bool = False,
                    cache: ModelCache | None = None) -> dict[str, Any]:
    """Repair the cell's suspect, evaluate it, write the run folder. `cache`: models the repair
    may share with other cells of the caller (a study passes one for all its cells, so every
    W2SDefense cell reuses one teacher); without it the repair shares nothing."""
    cell = raw if isinstance(raw, RepairCellConfig) else validate_config(
        RepairCellConfig, raw, where=f"cell '{raw.get('name')}'")
    runtime = Runtime(cell.runtime).check()
    slot = RunSlot(cell.run_dir, cell.resolved(), kind="repair", seed=cell.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    repair = cell.repair.build() if cell.repair else None
    victim_config = cell.victim_config()
    dataset = load_dataset(cell.defender_data)
    attack = build_attack(victim_config.model_copy(update={"attack": cell.attack})
                          if cell.attack is not None else victim_config, dataset)
    poisoned_test, misses = attack.poisoned_test(dataset.test) if attack else ([], 0)
    sets = EvaluationSets(dataset.test, poisoned_test,
                          attack.config.target_label if attack else None)
    suspect = (load_suspect(cell.suspect, allow_pickle=allow_pickle,
                            trust_remote_code=trust_remote_code) if cell.suspect
               else prepare_suspect(victim_config, progress=progress))
    runtime.place(suspect.model)
    with slot.building() as run:
        run.record_inputs(data_files=source_fingerprints(dataset.source))
        started = time.time()
        model, tokenizer, history = suspect.model, suspect.tokenizer, []
        if repair is not None:
            repaired = repair.repair(suspect, dataset.train, progress=progress, cache=cache,
                                     runtime=runtime)
            model, tokenizer, history = repaired.model, repaired.tokenizer, repaired.history
            if cell.save_weights:
                run.write_weights(repaired.trained_state, "repaired")
        repair_seconds = time.time() - started
        metrics, predictions = evaluate(model, tokenizer, sets, dataset.num_labels,
                                        **cell.evaluation.model_dump(), runtime=runtime,
                                        progress=progress)
        metrics["flip_rate"] = _flip_rate(sets, predictions)
        run.log(f"CA {metrics['clean_accuracy']:.4f} ASR {metrics['attack_success_rate']}")
        metrics.update({
            "seed": cell.seed, "dataset": dataset.name,
            "victim": str(cell.suspect or victim_config.run_dir),
            "attack": (cell.attack or victim_config.attack).name
            if (cell.attack or victim_config.attack) else None,
            "repair": repair.name if repair else None, "target_label": sets.target_label,
            "sizes": {"defender_train": len(dataset.train), "test": len(dataset.test),
                      "poisoned_test": len(poisoned_test)},
            "test_trigger_misses": misses, "history": history,
            "repair_seconds": round(repair_seconds, 1)})
        run.finish(metrics)
        return run.read_metrics()
