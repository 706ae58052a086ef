"""The data-poisoning pipeline: load data -> poison -> (sanitize) -> load model -> tune ->
evaluate CA and ASR.

With a `sanitize:` training-set defense, a fresh copy of the model is tuned on the poisoned set
first (the defense's preliminary run), the defense removes what it finds suspicious, and the
victim is tuned on the rest; metrics.json's `sanitize` records what was removed and how much of it
was poisoned (removal precision and recall).

One `Runtime` per run, built from the config's `runtime:` section (checked before anything is
written): the model goes to its device, training and evaluation run through it, and
environment.json records what it ran on. With `eval_every_epoch` the last epoch's evaluation is
the final one (not repeated), and `train_seconds` counts training only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from poisonlab.attacks import DataPoisoningAttack, PoisonReport
from poisonlab.data import DatasetSplits, Example, load_dataset
from poisonlab.data.fingerprint import source_fingerprints
from poisonlab.experiment.config import RunConfig
from poisonlab.experiment.measure import EvaluationSets, evaluate
from poisonlab.experiment.rundir import RunDir, RunSlot
from poisonlab.metrics import removal_precision, removal_recall
from poisonlab.models import LoadedModel, load_classifier
from poisonlab.models.loading import (check_model_source, check_trainable,
                                      prepare_quantized_for_training)
from poisonlab.runtime import Runtime
from poisonlab.training import train_classifier
from poisonlab.training.tracking import Tracking, check_trackers


def build_attack(config: RunConfig, dataset: DatasetSplits) -> DataPoisoningAttack | None:
    if config.attack is None:
        return None
    attack = config.attack.build()
    attack.check_labels(dataset.num_labels)
    return attack.prepare(dataset)


@dataclass
class PreparedRun:
    """Everything a run needs that can fail on bad input, built before its folder exists."""

    config: RunConfig
    dataset: DatasetSplits
    loaded: LoadedModel
    strategy: Any
    train_set: list[Example]
    poison_report: PoisonReport | None
    sets: EvaluationSets
    test_misses: int | None


def prepare_run(config: RunConfig) -> PreparedRun:
    """Load the data, build and apply the attack, load the model: every user error a run can
    hit before training."""
    strategy = config.tuning.build()
    check_trackers(config.training.report_to)
    check_trainable(config.model, config.tuning.name)
    check_model_source(config.model.name, **config.model.load_options())
    dataset = load_dataset(config.data)
    attack = build_attack(config, dataset)
    train_set, report, misses = dataset.train, None, None
    sets = EvaluationSets(dataset.test, [], None)
    if attack is not None:
        if config.poison_training:
            train_set, report = attack.poison(dataset.train)
        poisoned_test, misses = attack.poisoned_test(dataset.test)
        sets = EvaluationSets(dataset.test, poisoned_test, attack.config.target_label)
    if config.sanitize is not None:
        check_trainable(config.model, config.sanitize.config.tuning.name)
    loaded = load_run_model(config, dataset.num_labels)
    return PreparedRun(config, dataset, loaded, strategy, train_set, report, sets, misses)


def load_run_model(config: RunConfig, num_labels: int) -> LoadedModel:
    """A fresh copy of the run's model, ready to train."""
    loaded = load_classifier(config.model.name, num_labels, seed=config.seed,
                             **config.model.load_options())
    if config.model.quantization is not None:
        prepare_quantized_for_training(loaded.model)
    return loaded


def sanitize_training_set(prepared: PreparedRun, run: RunDir, *, progress: bool,
                          runtime: Runtime) -> tuple[list[Example], dict[str, Any] | None]:
    """The training set after the run's training-set defense, and what it removed (None
    without one). The defense judges a fresh copy of the model tuned on the whole set."""
    config, train_set = prepared.config, prepared.train_set
    if config.sanitize is None:
        return train_set, None
    sanitized = config.sanitize.build().sanitize(
        load_run_model(config, prepared.dataset.num_labels), train_set, runtime=runtime,
        progress=progress)
    removed = np.zeros(len(train_set), dtype=bool)
    removed[sanitized.removed] = True
    poisoned = np.asarray([e.poisoned for e in train_set], dtype=bool)
    record = {"defense": config.sanitize.name, "removed": int(removed.sum()),
              "removed_poisoned": int((removed & poisoned).sum()),
              "poisoned": int(poisoned.sum()), "kept": len(sanitized.kept),
              "removal_precision": removal_precision(removed, poisoned),
              "removal_recall": removal_recall(removed, poisoned), **sanitized.details}
    run.log(f"{config.sanitize.name} removed {record['removed']} training examples, "
            f"{record['removed_poisoned']} of the {record['poisoned']} poisoned")
    return sanitized.kept, record


def run_experiment(config: RunConfig, *, force: bool = False, progress: bool = True,
                   runtime: Runtime | None = None) -> dict:
    """Run one configuration into its run folder and return its metrics (a finished folder of
    the same config is reused; one of another config is refused). `runtime`: the job's, when
    the caller has one (default: built from `config.runtime`)."""
    runtime = (runtime or Runtime(config.runtime)).check()
    slot = RunSlot(config.run_dir, config.resolved(), kind="train", seed=config.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    prepared = prepare_run(config)
    with slot.building() as run:
        return train_and_measure(prepared, run, progress=progress, runtime=runtime)


def train_and_measure(prepared: PreparedRun, run: RunDir, *, progress: bool = True,
                      extra: dict[str, Any] | None = None,
                      runtime: Runtime | None = None) -> dict:
    """Tune the model on the (poisoned) training set, measure CA and ASR, write `run`
    (`extra` joins its metrics)."""
    config, dataset, sets = prepared.config, prepared.dataset, prepared.sets
    report, train_set = prepared.poison_report, prepared.train_set
    runtime = runtime or Runtime(config.runtime)
    started = time.time()
    run.record_inputs(data_files=source_fingerprints(dataset.source))
    if report is not None:
        run.log(f"poisoned {report.poisoned} of {len(train_set)} training examples "
                f"({report.misses} trigger misses)")
    train_set, sanitized = sanitize_training_set(prepared, run, progress=progress,
                                                 runtime=runtime)
    loaded = prepared.loaded
    torch.manual_seed(config.seed)
    model = runtime.place(prepared.strategy.apply(loaded))
    tc = config.training
    eval_kwargs = {"batch_size": tc.eval_batch_size, "max_length": tc.max_length,
                   "runtime": runtime, "progress": progress}
    last: dict[str, Any] = {"epoch": 0, "seconds": 0.0}  # the latest evaluation, and its time

    def on_epoch_end(epoch: int, loss: float) -> dict[str, float]:
        if not config.eval_every_epoch:
            run.log(f"epoch {epoch} loss {loss:.4f}")
            return {}
        evaluated = time.time()
        metrics, predictions = evaluate(model, loaded.tokenizer, sets, dataset.num_labels,
                                        **eval_kwargs)
        last.update(epoch=epoch, result=(metrics, predictions),
                    seconds=last["seconds"] + time.time() - evaluated)
        asr = metrics["attack_success_rate"]
        run.log(f"epoch {epoch} loss {loss:.4f} CA {metrics['clean_accuracy']:.4f}"
                + (f" ASR {asr:.4f}" if asr is not None else ""))
        return {"clean_accuracy": metrics["clean_accuracy"], "attack_success_rate": asr}

    tracking = (Tracking.open(tc.report_to, run_name=config.name, folder=run.path,
                              config=config.resolved())
                if tc.report_to and run.writes else Tracking())
    with tracking:
        train_started = time.time()
        history = train_classifier(model, loaded.tokenizer, train_set, tc,
                                   on_epoch_end=on_epoch_end, progress=progress,
                                   description=config.name, runtime=runtime, tracking=tracking)
        train_seconds = time.time() - train_started - last["seconds"]
        # the model has not changed since the last epoch's evaluation: it is the final one
        metrics, predictions = (last["result"] if last["epoch"] == tc.epochs else
                                evaluate(model, loaded.tokenizer, sets, dataset.num_labels,
                                         **eval_kwargs))
        tracking.log({f"final/{key}": metrics[key]
                      for key in ("clean_accuracy", "attack_success_rate")})
    _write_predictions(run, sets, predictions)
    if config.save_weights:
        run.write_weights(prepared.strategy.trainable_state(model), "trained")
    metrics.update({
        "seed": config.seed, "dataset": dataset.name, "model": config.model.name,
        "tuning": config.tuning.name, "attack": config.attack.name if config.attack else None,
        "poison_training": bool(config.attack is not None and config.poison_training),
        "target_label": sets.target_label,
        "poison": report.as_dict() if report else None, "sanitize": sanitized,
        "test_trigger_misses": prepared.test_misses,
        "sizes": {"train": len(train_set), "test": len(sets.clean_test),
                  "poisoned_test": len(sets.poisoned_test)},
        "history": history, "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(len(train_set) * tc.epochs / train_seconds, 2),
        "total_seconds": round(time.time() - started, 2), **(extra or {})})
    run.finish(metrics)
    return run.read_metrics()


def _write_predictions(run: RunDir, sets: EvaluationSets, predictions: dict[str, np.ndarray]) -> None:
    rows = [{"split": "clean", "text": e.text, "label": e.label, "prediction": int(p)}
            for e, p in zip(sets.clean_test, predictions["clean"])]
    if "poisoned" in predictions:
        rows += [{"split": "poisoned", "text": e.text, "label": e.label, "prediction": int(p)}
                 for e, p in zip(sets.poisoned_test, predictions["poisoned"])]
    run.write_predictions("predictions", rows)
