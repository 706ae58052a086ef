"""MNER-QG runs under the run protocol: `run_training` trains, evaluates and writes a run folder
(resuming from the checkpoint in its partial folder after a kill); `run_eval` evaluates a trained
run folder on one split. The model, training loop and decoding are poisonlab.mner's.

A run folder holds config.yaml (entity types filled in), run.json, environment.json,
train_log.jsonl, model.safetensors, predictions_<split>.jsonl and metrics.json (last).

Both build one `Runtime` from the config's `runtime:` section and hand it to training and
prediction; environment.json records what it ran on. MNER-QG runs in one process (the main one,
which writes every file): its loop does not shard batches, so a multi-process launch is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from poisonlab.errors import ConfigError
from poisonlab.experiment.rundir import RunSlot
from poisonlab.io import write_json, write_jsonl
from poisonlab.mner.checkpoint import remove_checkpoint
from poisonlab.mner.config import MnerConfig
from poisonlab.mner.conll import entity_types
from poisonlab.mner.train import (METRICS_VERSION, build_pipeline, evaluate, fit, load_data,
                                  load_run, predict, prediction_rows, save_model)
from poisonlab.runtime import Runtime, RuntimeConfig


def single_process_runtime(config: RuntimeConfig) -> Runtime:
    """The job's runtime, checked before anything is written: the device exists, and the job is
    not split over several processes (MNER-QG's loop would train a full copy in each)."""
    runtime = Runtime(config).check()
    if runtime.distributed:
        raise ConfigError(f"MNER-QG runs in one process, not {runtime.num_processes}: start it "
                          "without `accelerate launch` (runtime.device picks the GPU)")
    return runtime


def run_training(config: MnerConfig, out_dir: str | Path, eval_splits: tuple[str, ...] = ("test",),
                 *, force: bool = False, allow_pickle: bool = False,
                 trust_remote_code: bool = False) -> dict[str, Any]:
    """Train on `train`, evaluate on `eval_splits`, write the run folder under the run protocol;
    returns metrics. A finished folder of the same config is reused; a killed run resumes from
    the checkpoint in its partial folder (`force` starts over)."""
    out_dir = Path(out_dir)
    begin = time.time()
    data = load_data(config, ("train", *eval_splits))
    if config.data.types is None:
        config = config.model_copy(deep=True)
        config.data.types = entity_types(data["train"].tweets)
    runtime = single_process_runtime(config.runtime)
    slot = RunSlot(out_dir, config.model_dump(mode="json"), kind="mner", seed=config.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    pipe = build_pipeline(config, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    with slot.building(resume=not force) as run:
        progress = fit(pipe, data["train"], run.path, runtime)
        train_seconds = time.time() - begin + progress.earlier_seconds
        save_model(pipe, run.path / "model.safetensors")
        remove_checkpoint(run.path)
        metrics: dict[str, Any] = {"metrics_version": METRICS_VERSION, "seed": config.seed,
                                   "train_tweets": len(data["train"]),
                                   "epochs": config.train.epochs,
                                   "train_seconds": round(train_seconds, 1)}
        for split in eval_splits:
            predictions = predict(pipe, data[split], runtime)
            metrics[split] = evaluate(pipe, data[split], predictions)
            write_jsonl(run.path / f"predictions_{split}.jsonl",
                        prediction_rows(data[split], predictions))
        metrics["total_seconds"] = round(time.time() - begin, 1)
        run.finish(metrics)
        return run.read_metrics()


def run_eval(run_dir: str | Path, split: str = "test", out_dir: str | Path | None = None,
             threshold: float | None = None, device: str | None = None,
             **trust: bool) -> dict[str, Any]:
    """Evaluate a trained run folder on one split; writes metrics_<split>.json there (or out_dir).
    `threshold` replaces the run's span threshold (e.g. one chosen on valid by `thresholds.py`);
    `device` the run's runtime.device."""
    pipe = load_run(run_dir, device=device, **trust)
    if threshold is not None:
        pipe.config.decode = pipe.config.decode.with_threshold(threshold)
    runtime = single_process_runtime(pipe.config.runtime)
    data = load_data(pipe.config, (split,))
    predictions = predict(pipe, data[split], runtime)
    metrics = {"metrics_version": METRICS_VERSION, "decode": pipe.config.decode.model_dump(),
               split: evaluate(pipe, data[split], predictions)}
    target = Path(out_dir or run_dir)
    write_json(target / f"metrics_{split}.json", metrics)
    write_jsonl(target / f"predictions_{split}.jsonl", prediction_rows(data[split], predictions))
    return metrics
