"""Evaluate a detection defense on a victim and write a defense result folder.

Metrics (all from poisonlab.metrics): CA and ASR without the defense and after it (a flagged
input is rejected: an error in CA, not a success in ASR; an accepted one is classified after
purification), FRR, FAR and AUROC of the scores; with a fixed threshold, the same metrics again
at a threshold calibrated on clean dev data (`*_calibrated`).
A result folder holds config.yaml, environment.json, scores.jsonl (per input: score, flag,
predictions with and without the defense), histogram.png and metrics.json (written last)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field, field_validator, model_validator

from poisonlab.config import RunName, StrictConfig
from poisonlab.data import DataConfig, DatasetSplits, Example, load_dataset
from poisonlab.defenses.base import DETECTORS, Detector, SuspectModel, calibrated_threshold
from poisonlab.errors import ConfigError
from poisonlab.experiment.config import ComponentSpec, component, derive_seeds
from poisonlab.experiment.rundir import RunDir, RunSlot
from poisonlab.io import atomic_write
from poisonlab.metrics import (attack_success_rate, auroc, clean_accuracy, false_acceptance_rate,
                               false_rejection_rate)
from poisonlab.models.loading import check_model_source
from poisonlab.registry import validate_config


class DetectionConfig(StrictConfig):
    name: RunName = Field("defense", description="result folder name under output_dir")
    victim: str = Field(description="a finished run folder with saved weights, or a released "
                                    "classifier (builtin name, folder or Hub id) used as is")
    defense: ComponentSpec = Field(description="detector: {name: psim|onion|strip, ...config}")
    data: dict[str, Any] = Field(
        default_factory=dict, description="data config; for a run folder, fields merged over "
                                          "the run's data config (e.g. test_size)")
    attack: ComponentSpec | None = Field(
        None, description="data-poisoning attack whose trigger makes the poisoned test set; "
                          "null: the run's attack")
    num_labels: int = Field(2, ge=2, description="labels of a released classifier")
    also_calibrated: bool = Field(
        True, description="with a fixed threshold, also report metrics at a threshold "
                          "calibrated on the clean dev set to target_frr (keys *_calibrated)")
    seed: int = Field(0, description="seed of the detector (unless its own seed is set)")
    output_dir: str = Field("defenses")

    @field_validator("defense", "attack", mode="before")
    @classmethod
    def _component(cls, value: Any, info: Any) -> Any:
        return component(value, info.field_name)


    @model_validator(mode="after")
    def _derive_seeds(self) -> "DetectionConfig":
        from poisonlab.defenses import load_all
        load_all()
        derive_seeds(self.seed, [], [(self.defense, DETECTORS)])
        return self

    @property
    def result_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def resolved(self) -> dict[str, Any]:
        from poisonlab.defenses import load_all
        load_all()
        data = self.model_dump(mode="json")
        values = DETECTORS.make_config(self.defense.name, self.defense.params)
        data["defense"] = {"name": self.defense.name, **values.model_dump(mode="json")}
        return data


def evaluate_detector(detector: Detector, clean_test: Sequence[Example],
                      poisoned_test: Sequence[Example], target_label: int,
                      extra_thresholds: dict[str, float] | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics of a fitted detector at its threshold (and at each extra threshold, as keys
    suffixed `_<name>`), and one row per test input (for scores.jsonl).

    Scores, purification and the victim's predictions are computed once for every input, so
    any threshold's metrics follow without another pass."""
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
        clean_flags, poisoned_flags = clean["scores"] > threshold, poisoned["scores"] > threshold
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
    rows = [{"split": split, "text": e.text, "label": e.label,
             "score": float(out[split]["scores"][i]),
             "flagged": bool(out[split]["scores"][i] > detector.threshold_),
             "prediction": int(out[split]["defended"][i]),
             "prediction_no_defense": int(out[split]["undefended"][i])}
            for split, examples in sets.items() for i, e in enumerate(examples)]
    return metrics, rows


def _is_run_folder(victim: str) -> bool:
    return (Path(victim) / "config.yaml").is_file()


def detection_inputs(config: DetectionConfig) -> tuple[DataConfig, ComponentSpec]:
    """The defender's data config and the trigger to evaluate, read without loading a model:
    for a run folder, its data (with the config's fields merged over) and its attack."""
    from poisonlab.experiment.restore import trained_run_config
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


def load_suspect(config: DetectionConfig, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False) -> SuspectModel:
    trust = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    if _is_run_folder(config.victim):
        return SuspectModel.from_run(config.victim, **trust)
    return SuspectModel.from_released(config.victim, config.num_labels, **trust)


def run_detection(config: DetectionConfig, *, force: bool = False, progress: bool = False,
                  allow_pickle: bool = False, trust_remote_code: bool = False) -> dict[str, Any]:
    """Fit the detector on the defender's clean data, evaluate it, write the result folder.
    Trust settings are the caller's; the victim folder never grants them."""
    from poisonlab.attacks import DATA_ATTACKS, load_all as load_attacks
    load_attacks()
    data_config, attack_spec = detection_inputs(config)
    attack = attack_spec.build(DATA_ATTACKS, where=f"attack '{attack_spec.name}'")
    resolved = {**config.resolved(), "data": data_config.model_dump(mode="json"),
                "attack": {"name": attack_spec.name, **attack.config.model_dump(mode="json")}}
    slot = RunSlot(config.result_dir, resolved, kind="detection", seed=config.seed)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    detector = config.defense.build(DETECTORS, where=f"defense '{config.defense.name}'")
    dataset = load_dataset(data_config)
    attack.check_labels(dataset.num_labels)
    attack.prepare(dataset)
    poisoned_test, _ = attack.poisoned_test(dataset.test)
    suspect = load_suspect(config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    with slot.building() as result:
        return _fit_and_evaluate(config, detector, suspect, dataset, poisoned_test,
                                 attack.config.target_label, attack_spec.name, result)


def _fit_and_evaluate(config: DetectionConfig, detector: Detector, suspect: SuspectModel,
                      dataset: DatasetSplits, poisoned_test: list[Example], target_label: int,
                      attack_name: str, result: RunDir) -> dict[str, Any]:
    started = time.time()
    detector.fit(suspect, dataset.train, dataset.dev or None)
    fit_seconds = time.time() - started
    result.log(f"fitted {config.defense.name} in {fit_seconds:.1f}s; threshold "
               f"{detector.threshold_:.4g}")
    extra = {}
    if config.also_calibrated and detector.calibration_["fixed"] and dataset.dev:
        dev_scores = detector.score([e.text for e in dataset.dev])
        extra["calibrated"] = calibrated_threshold(dev_scores, detector.config.target_frr)
    metrics, rows = evaluate_detector(detector, dataset.test, poisoned_test, target_label, extra)
    result.write_predictions("scores", rows)
    thresholds = {"threshold": metrics["threshold"], **(
        {"calibrated": metrics["threshold_calibrated"]} if "threshold_calibrated" in metrics
        else {})}
    plot_histogram(rows, thresholds, f"{config.name}: {config.defense.name}",
                   result.path / "histogram.png")
    metrics.update({"seed": config.seed, "defense": config.defense.name,
                    "victim": config.victim, "dataset": dataset.name,
                    "attack": attack_name, "fit_seconds": round(fit_seconds, 2),
                    "sizes": {**metrics["sizes"], "defender_train": len(dataset.train),
                              "defender_dev": len(dataset.dev)}})
    result.finish(metrics)
    return result.read_metrics()


def load_scores(result_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(result_dir) / "scores.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _draw_histogram(ax: Any, rows: Sequence[dict[str, Any]], thresholds: dict[str, float],
                    title: str) -> None:
    clean = [r["score"] for r in rows if r["split"] == "clean"]
    poisoned = [r["score"] for r in rows if r["split"] == "poisoned"]
    values = np.asarray(clean + poisoned, dtype=float)
    bins = np.linspace(values.min(), values.max() + 1e-9, 31) if len(values) else 10
    ax.hist(clean, bins=bins, alpha=0.6, label=f"clean (n={len(clean)})", color="tab:blue")
    ax.hist(poisoned, bins=bins, alpha=0.6, label=f"poisoned (n={len(poisoned)})",
            color="tab:red")
    for (name, threshold), style in zip(thresholds.items(), ("--", ":")):
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", linestyle=style,
                       label=f"{name} {threshold:.3g}")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("score (higher = more suspicious)", fontsize=7)
    ax.legend(fontsize=6)


def plot_histogram(rows: Sequence[dict[str, Any]], thresholds: dict[str, float], title: str,
                   path: str | Path) -> None:
    """Histogram of the detector's scores on clean vs poisoned inputs, thresholds marked."""
    plot_histogram_grid([(title, rows, thresholds)], path)


def plot_histogram_grid(panels: Sequence[tuple[str, Sequence[dict[str, Any]],
                                               dict[str, float]]],
                        path: str | Path, columns: int = 4) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = min(columns, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.6 * columns, 2.8 * lines),
                             squeeze=False)
    for ax, (title, rows, thresholds) in zip(axes.flat, panels):
        _draw_histogram(ax, rows, thresholds, title)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)


def histogram_grid_of(result_dirs: Sequence[str | Path], path: str | Path) -> None:
    """One panel per finished defense result folder (e.g. every PSIM cell of a study);
    unfinished ones are skipped."""
    panels = []
    for folder in result_dirs:
        if not (Path(folder) / "metrics.json").exists():
            continue
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
        thresholds = {"threshold": metrics["threshold"]}
        if "threshold_calibrated" in metrics:
            thresholds["calibrated"] = metrics["threshold_calibrated"]
        panels.append((Path(folder).name, load_scores(folder), thresholds))
    if not panels:
        raise ConfigError("no finished defense result folders to plot")
    plot_histogram_grid(panels, path)


def _threshold_label(metrics: dict[str, Any], suffix: str) -> str:
    threshold = metrics[f"threshold{suffix}"]
    if threshold is None or not np.isfinite(threshold):
        return "none (purify only)"
    if suffix or not metrics["calibration"]["fixed"]:
        return f"{threshold:.3g} (dev FRR {metrics['target_frr']:.0%})"
    return f"{threshold:.3g} (fixed)"


def detection_table(study: Any) -> list[dict[str, Any]]:
    """Per victim: a row without defense, then one per defense and threshold, from the
    finished cells of a detection study (the axis named `victim`, else the first, is the victim;
    the others name the defense)."""
    from poisonlab.studies.runner import cells
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    victim_axis = "victim" if "victim" in study.axes else next(iter(study.axes))
    other_axes = [a for a in study.axes if a != victim_axis]
    victims = list(study.axes[victim_axis])
    ordered = sorted(cells(study), key=lambda cell: victims.index(cell[0][victim_axis]))
    for labels, config in ordered:
        path = Path(config["output_dir"]) / config["name"] / "metrics.json"
        if not path.exists():
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))
        victim = labels[victim_axis]
        defense = " / ".join(labels[a] for a in other_axes)
        if victim not in seen:
            seen.add(victim)
            rows.append({"victim": victim, "defense": "none", "threshold": "-",
                         "clean_accuracy": metrics["clean_accuracy_no_defense"],
                         "attack_success_rate": metrics["attack_success_rate_no_defense"]})
        for suffix in ("", "_calibrated"):
            if f"threshold{suffix}" not in metrics:
                continue
            rows.append({"victim": victim, "defense": defense,
                         "threshold": _threshold_label(metrics, suffix),
                         **{key: metrics[f"{key}{suffix}"] for key in TABLE_METRICS},
                         "auroc": metrics["auroc"]})
    return rows


TABLE_METRICS = ["clean_accuracy", "attack_success_rate", "clean_accuracy_loss",
                 "false_rejection_rate", "false_acceptance_rate"]
TABLE_COLUMNS = ["victim", "defense", "threshold", *TABLE_METRICS, "auroc"]


def write_detection_table(study: Any, folder: str | Path) -> Path:
    """table.md and table.csv of `detection_table` in `folder`."""
    from poisonlab.io import write_text
    from poisonlab.report.tables import csv_table, markdown_table
    rows = detection_table(study)
    if not rows:
        raise ConfigError(f"study '{study.name}' has no finished cells in {study.folder}")
    folder = Path(folder)
    percent = [*TABLE_METRICS, "auroc"]
    header = (f"# {study.name}\n\n{study.description.strip()}\n\nValues in percent. CA and ASR "
              "after a defense count a rejected input as an error (CA) and as a failed attack "
              "(ASR).\n\n")
    write_text(folder / "table.md", header + markdown_table(rows, TABLE_COLUMNS, percent))
    write_text(folder / "table.csv", csv_table(rows, TABLE_COLUMNS))
    return folder / "table.md"
