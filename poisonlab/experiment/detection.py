"""Evaluate a detection defense on a victim and write a defense result folder.

Metrics (all from poisonlab.metrics): CA and ASR without the defense and after it (a flagged
input is rejected: an error in CA, not a success in ASR; an accepted one is classified after
purification), FRR, FAR and AUROC of the scores; with a fixed threshold, the same metrics again
at a threshold calibrated on clean dev data (`*_calibrated`).
A result folder holds config.yaml, run.json, environment.json, scores.jsonl (per input: score,
flag, predictions with and without the defense) and metrics.json (written last); the score
histogram is drawn from scores.jsonl by poisonlab.report.detection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field, model_validator

from poisonlab.config import RunName, StrictConfig
from poisonlab.data import DataConfig, DatasetSplits, Example, load_dataset
from poisonlab.data.fingerprint import source_fingerprints
from poisonlab.defenses.base import DETECTORS, Detector, SuspectModel
from poisonlab.errors import ConfigError
from poisonlab.attacks import DATA_ATTACKS
from poisonlab.experiment.config import derive_seeds
from poisonlab.experiment.restore import suspect_from_run, trained_run_config
from poisonlab.experiment.rundir import RunDir, RunSlot
from poisonlab.metrics import (attack_success_rate, auroc, clean_accuracy, false_acceptance_rate,
                               false_rejection_rate)
from poisonlab.models.cache import ModelCache
from poisonlab.models.loading import check_model_source
from poisonlab.registry import ComponentSpec, component_field, validate_config
from poisonlab.runtime import Runtime, RuntimeConfig


class DetectionConfig(StrictConfig):
    name: RunName = Field("defense", description="result folder name under output_dir")
    victim: str = Field(description="a finished run folder with saved weights, or a released "
                                    "classifier (builtin name, folder or Hub id) used as is")
    defense: component_field(DETECTORS) = Field(
        description="detector: {name: psim|onion|strip, <field>: <value>, ...}")
    data: dict[str, Any] = Field(
        default_factory=dict, description="data config; for a run folder, fields merged over "
                                          "the run's data config (e.g. test_size)")
    attack: component_field(DATA_ATTACKS) | None = Field(
        None, description="data-poisoning attack whose trigger makes the poisoned test set; "
                          "null: the run's attack")
    num_labels: int = Field(2, ge=2, description="labels of a released classifier")
    also_calibrated: bool = Field(
        True, description="with a fixed threshold, also report metrics at a threshold "
                          "calibrated on the clean dev set to target_frr (keys *_calibrated)")
    seed: int = Field(0, description="seed of the detector (unless its own seed is set)")
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="where the victim and the detector's own models run (device, precision); "
                    "default values are not part of the result's identity")
    output_dir: str = Field("defenses")

    @model_validator(mode="after")
    def _derive_seeds(self) -> "DetectionConfig":
        derive_seeds(self.seed, [self.defense])
        return self

    @property
    def result_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def evaluate_detector(detector: Detector, clean_test: Sequence[Example],
                      poisoned_test: Sequence[Example], target_label: int,
                      extra_thresholds: dict[str, float] | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics of a fitted detector at its threshold (and at each extra threshold, as keys
    suffixed `_<name>`), and one row per test input (for scores.jsonl).

    Everything goes through the detector's contract, as `Detector.defend` does: its scores, its
    purification, the victim's predictions on the purified texts, and its flags (`flagged`) at
    each threshold. Scores, purification and predictions are computed once for every input (an
    input rejected at one threshold may be accepted at another), so any threshold's metrics
    follow without another pass."""
    suspect = detector.suspect_
    sets = {"clean": list(clean_test), "poisoned": list(poisoned_test)}
    out: dict[str, dict[str, np.ndarray]] = {}
    started = time.time()
    for split, examples in sets.items():
        texts = [e.text for e in examples]
        purified = detector.purify(texts)
        undefended = suspect.predict_logits(texts).argmax(-1) if texts else np.zeros(0, int)
        out[split] = {"scores": np.asarray(detector.score(texts), dtype=float),
                      "undefended": undefended,
                      "defended": undefended if purified == texts else
                      suspect.predict_logits(purified).argmax(-1)}
    seconds = time.time() - started
    gold = {split: [e.label for e in examples] for split, examples in sets.items()}
    clean, poisoned = out["clean"], out["poisoned"]

    def at(threshold: float, suffix: str = "") -> dict[str, Any]:
        clean_flags = detector.flagged(clean["scores"], threshold)
        poisoned_flags = detector.flagged(poisoned["scores"], threshold)
        ca = clean_accuracy(clean["defended"], gold["clean"], rejected=clean_flags)
        return {f"threshold{suffix}": threshold, f"clean_accuracy{suffix}": ca,
                f"clean_accuracy_loss{suffix}": metrics["clean_accuracy_no_defense"] - ca,
                f"attack_success_rate{suffix}": attack_success_rate(
                    poisoned["defended"], gold["poisoned"], target_label,
                    rejected=poisoned_flags),
                f"false_rejection_rate{suffix}": false_rejection_rate(clean_flags),
                f"false_acceptance_rate{suffix}": false_acceptance_rate(poisoned_flags)}

    metrics: dict[str, Any] = {
        "clean_accuracy_no_defense": clean_accuracy(clean["undefended"], gold["clean"]),
        "attack_success_rate_no_defense": attack_success_rate(
            poisoned["undefended"], gold["poisoned"], target_label),
        "auroc": auroc(clean["scores"], poisoned["scores"])}
    metrics.update(at(detector.threshold_))
    for name, threshold in (extra_thresholds or {}).items():
        metrics.update(at(threshold, f"_{name}"))
    metrics.update({
        "calibration": detector.calibration_, "target_frr": detector.config.target_frr,
        "target_label": target_label,
        "sizes": {"clean_test": len(sets["clean"]), "poisoned_test": len(sets["poisoned"])},
        "evaluate_seconds": round(seconds, 2)})
    flags = {split: detector.flagged(out[split]["scores"]) for split in sets}
    rows = [{"split": split, "text": e.text, "label": e.label,
             "score": float(out[split]["scores"][i]),
             "flagged": bool(flags[split][i]),
             "prediction": int(out[split]["defended"][i]),
             "prediction_no_defense": int(out[split]["undefended"][i])}
            for split, examples in sets.items() for i, e in enumerate(examples)]
    return metrics, rows


def _is_run_folder(victim: str) -> bool:
    return (Path(victim) / "config.yaml").is_file()


def detection_inputs(config: DetectionConfig) -> tuple[DataConfig, ComponentSpec]:
    """The defender's data config and the trigger to evaluate, read without loading a model:
    for a run folder, its data (with the config's fields merged over) and its attack."""
    victim = Path(config.victim)
    if _is_run_folder(config.victim):
        if not (victim / "metrics.json").is_file():
            raise ConfigError(f"{victim}: the run is not finished (no metrics.json)")
        run = trained_run_config(victim)
        data = validate_config(DataConfig, {**run.data.model_dump(mode="json"), **config.data},
                               where=f"{victim}/config.yaml: data")
        attack = config.attack or run.attack
    else:
        check_model_source(config.victim)
        if "name" not in config.data:
            raise ConfigError(f"defense '{config.name}': field 'data': a released model needs "
                              "a data config with a name (e.g. {name: sst2})")
        data = validate_config(DataConfig, config.data, where="data")
        attack = config.attack
    if attack is None:
        raise ConfigError(f"defense '{config.name}': field 'attack': the run has no attack; "
                          "name the trigger to evaluate (e.g. {name: badnet, target_label: 1})")
    return data, attack


def suspect_of(config: DetectionConfig, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False) -> SuspectModel:
    trust = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    if _is_run_folder(config.victim):
        return suspect_from_run(config.victim, **trust)
    return SuspectModel.from_released(config.victim, config.num_labels, **trust)


def run_detection(config: DetectionConfig, *, force: bool = False, progress: bool = False,
                  allow_pickle: bool = False, trust_remote_code: bool = False,
                  cache: ModelCache | None = None) -> dict[str, Any]:
    """Fit the detector on the defender's clean data, evaluate it, write the result folder.
    Trust settings are the caller's; the victim folder never grants them. `cache`: models the
    detector may share with other runs of the caller (a study passes one for all its cells);
    without it the fit shares nothing."""
    data_config, attack_spec = detection_inputs(config)
    attack = attack_spec.build()
    resolved = {**config.resolved(), "data": data_config.model_dump(mode="json"),
                "attack": attack_spec.dump()}
    runtime = Runtime(config.runtime).check()
    slot = RunSlot(config.result_dir, resolved, kind="detection", seed=config.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    detector = config.defense.build()
    dataset = load_dataset(data_config)
    attack.check_labels(dataset.num_labels)
    attack.prepare(dataset)
    poisoned_test, _ = attack.poisoned_test(dataset.test)
    suspect = suspect_of(config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    suspect.runtime, suspect.progress = runtime, progress
    runtime.place(suspect.victim)
    with slot.building() as result:
        return _fit_and_evaluate(config, detector, suspect, dataset, poisoned_test,
                                 attack.config.target_label, attack_spec.name, result, cache,
                                 progress)


def _fit_and_evaluate(config: DetectionConfig, detector: Detector, suspect: SuspectModel,
                      dataset: DatasetSplits, poisoned_test: list[Example], target_label: int,
                      attack_name: str, result: RunDir,
                      cache: ModelCache | None, progress: bool) -> dict[str, Any]:
    result.record_inputs(data_files=source_fingerprints(dataset.source))
    started = time.time()
    detector.fit(suspect, dataset.train, dataset.dev or None, cache=cache, progress=progress)
    fit_seconds = time.time() - started
    result.log(f"fitted {config.defense.name} in {fit_seconds:.1f}s; threshold "
               f"{detector.threshold_:.4g}")
    extra = {}
    if config.also_calibrated and detector.calibration_["fixed"] and dataset.dev:
        extra["calibrated"] = detector.calibrated([e.text for e in dataset.dev],
                                                  detector.config.target_frr)
    metrics, rows = evaluate_detector(detector, dataset.test, poisoned_test, target_label, extra)
    result.write_predictions("scores", rows)
    if hasattr(detector, "calibration_scores_"):  # the clean scores behind a calibrated threshold
        result.write_predictions("calibration_scores", [
            {"text": text, "score": score} for text, score in detector.calibration_scores_])
    metrics.update({"seed": config.seed, "defense": config.defense.name,
                    "victim": config.victim, "dataset": dataset.name,
                    "attack": attack_name, "fit_seconds": round(fit_seconds, 2),
                    "sizes": {**metrics["sizes"], "defender_train": len(dataset.train),
                              "defender_dev": len(dataset.dev)}})
    result.finish(metrics)
    return result.read_metrics()
