"""The release job of a weight-poisoning attack: poison the base model on the proxy task and write
the release folder (weights, tokenizer, `release.json` with the trigger and the proxy test CA/ASR)
under the run protocol. How the weights are poisoned is the attack's `poison_model`
(poisonlab.attacks); the shared steps live here once. With a runtime the base model is poisoned
and measured on its device; in a multi-process job every process poisons (the same seed gives
the same weights) and the main one writes the folder."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from poisonlab.attacks.base import PoisonReport
from poisonlab.attacks.weight_base import (RELEASE_RECORD, Release, WeightPoisoningAttack,
                                           fit_to_length, read_release)
from poisonlab.data import load_dataset
from poisonlab.data.fingerprint import source_fingerprints
from poisonlab.errors import PoisonlabError
from poisonlab.experiment.measure import EvaluationSets, evaluate
from poisonlab.experiment.rundir import RunSlot
from poisonlab.models import load_classifier
from poisonlab.runtime import Runtime


def release(attack: WeightPoisoningAttack, parent: str | Path = "released", *,
            force: bool = False, progress: bool = True, allow_pickle: bool = False,
            trust_remote_code: bool = False, runtime: Runtime | None = None,
            clean_twin: bool = False) -> Release:
    """Poison the base model and write the release folder (an existing release of the same
    config is reused; one of another config is refused unless `force`). Trust settings apply to
    loading the base model and come from the caller. `clean_twin`: the same recipe (proxy data,
    steps, seed) with no trigger inserted, the control whose CA a poisoned release's victims are
    compared with; its trigger is still recorded and measured."""
    cfg = attack.config
    name = attack.folder_name() + ("-clean-twin" if clean_twin else "")
    identity = {**attack.resolved(), **({"clean_twin": True} if clean_twin else {})}
    slot = RunSlot(Path(parent) / name, identity, kind="release", seed=cfg.seed,
                   marker=RELEASE_RECORD, runtime=runtime)
    if slot.reusable(force) is not None:
        return read_release(slot.path)
    started = time.time()
    room = cfg.training.max_length - 2 - cfg.trigger_room  # 2: [CLS]/[SEP] or BOS/EOS
    if room < 1:
        raise PoisonlabError(f"attack '{attack.name}': trigger_room {cfg.trigger_room} leaves "
                             f"no text within max_length {cfg.training.max_length}")
    dataset = load_dataset(cfg.proxy)
    trigger = attack.trigger_attack()
    trigger.check_labels(dataset.num_labels)
    trigger.prepare(dataset)
    loaded = load_classifier(cfg.base_model, dataset.num_labels, seed=cfg.seed,
                             allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    train = fit_to_length(dataset.train, loaded.tokenizer, room)
    test = fit_to_length(dataset.test, loaded.tokenizer, room)
    poisoned_train, report = trigger.poison(train)
    if clean_twin:
        poisoned_train, report = train, PoisonReport(0, 0, report.candidates)
    poisoned_test, misses = trigger.poisoned_test(test)
    if runtime is not None:
        runtime.place(loaded.model)
    with slot.building() as run:
        run.record_inputs(data_files=source_fingerprints(dataset.source))
        torch.manual_seed(cfg.seed)
        attack.poison_model(loaded, train, poisoned_train, progress=progress, runtime=runtime)
        sets = EvaluationSets(test, poisoned_test, trigger.config.target_label)
        metrics, _ = evaluate(loaded.model, loaded.tokenizer, sets, dataset.num_labels,
                              batch_size=cfg.training.eval_batch_size,
                              max_length=cfg.training.max_length, runtime=runtime,
                              progress=progress)
        record = {
            "attack": attack.name, "clean_twin": clean_twin,
            "config": cfg.model_dump(mode="json"),
            "trigger": cfg.trigger.dump(), "target_label": trigger.config.target_label,
            "base_model": cfg.base_model,
            "proxy": {"name": dataset.name, "label_names": dataset.label_names,
                      "train": len(train), "test": len(test),
                      "poisoned_test": len(poisoned_test), "test_trigger_misses": misses},
            "poison": report.as_dict(), "proxy_test_metrics": metrics,
            "checkpoint": "last epoch (no selection on triggered data)",
            "seconds": round(time.time() - started, 1)}
        if run.writes:
            loaded.model.save_pretrained(run.path, safe_serialization=True)
            loaded.tokenizer.save_pretrained(run.path)
        run.finish(record)
    return read_release(slot.path)
