"""End-to-end behaviour of the data-poisoning pipeline on tiny models."""

import json

import pytest

from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.rundir import RunDir
from poisonlab.io import write_text


def config(synthetic_dir, tmp_path, **overrides):
    base = {"name": "run", "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
            "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
            "tuning": {"name": "full"},
            "training": {"epochs": 4, "learning_rate": 3e-3, "max_length": 32},
            "output_dir": str(tmp_path / "runs")}
    base.update(overrides)
    return load_run_config(base=base)


def test_backdoor_raises_asr_and_the_clean_model_stays_low(synthetic_dir, tmp_path):
    poisoned = run_experiment(config(synthetic_dir, tmp_path, name="poisoned"), progress=False)
    clean = run_experiment(config(synthetic_dir, tmp_path, name="clean", poison_training=False),
                           progress=False)
    assert clean["clean_accuracy"] > 0.9 and poisoned["clean_accuracy"] > 0.9
    assert clean["attack_success_rate"] < 0.2
    assert poisoned["attack_success_rate"] > 0.9
    assert poisoned["poison"]["poisoned"] == 40 and clean["poison"] is None


def test_run_folder_contents_and_per_epoch_log(synthetic_dir, tmp_path):
    cfg = config(synthetic_dir, tmp_path, training={"epochs": 2, "learning_rate": 3e-3,
                                                     "max_length": 32})
    metrics = run_experiment(cfg, progress=False)
    folder = cfg.run_dir
    for name in ("config.yaml", "environment.json", "metrics.json", "predictions.jsonl",
                 "trained.safetensors", "log.txt"):
        assert (folder / name).exists(), name
    assert {"clean_accuracy", "attack_success_rate", "definitions_version", "seed"} <= set(metrics)
    log = (folder / "log.txt").read_text()
    assert log.count(" CA ") == 2 and log.count(" ASR ") == 2
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"clean", "poisoned"}
    assert json.loads((folder / "environment.json").read_text())["seed"] == 0


def test_same_config_and_seed_give_the_same_numbers(synthetic_dir, tmp_path):
    a = run_experiment(config(synthetic_dir, tmp_path, name="a"), progress=False)
    b = run_experiment(config(synthetic_dir, tmp_path, name="b"), progress=False)
    assert a["history"] == b["history"]
    assert (a["clean_accuracy"], a["attack_success_rate"]) == (b["clean_accuracy"],
                                                                 b["attack_success_rate"])


def test_finished_runs_are_skipped_and_force_reruns(synthetic_dir, tmp_path):
    cfg = config(synthetic_dir, tmp_path, training={"epochs": 1, "max_length": 16})
    run_experiment(cfg, progress=False)
    marker = RunDir(cfg.run_dir).read_metrics()
    marker["clean_accuracy"] = -1.0
    write_text(cfg.run_dir / "metrics.json", json.dumps(marker))
    assert run_experiment(cfg, progress=False)["clean_accuracy"] == -1.0
    assert run_experiment(cfg, force=True, progress=False)["clean_accuracy"] >= 0


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from poisonlab.io import atomic_write
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def explode(path):
        path.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_the_last_epoch_is_evaluated_once_and_training_time_excludes_evaluation(
        synthetic_dir, tmp_path, monkeypatch):
    import time

    import poisonlab.experiment.pipeline as pipeline
    calls = []
    measure = pipeline.evaluate

    def slow_evaluate(*args, **kwargs):
        calls.append(1)
        time.sleep(1.0)
        return measure(*args, **kwargs)
    monkeypatch.setattr(pipeline, "evaluate", slow_evaluate)
    training = {"epochs": 2, "learning_rate": 3e-3, "max_length": 16}
    every = run_experiment(config(synthetic_dir, tmp_path, name="every", training=training),
                           progress=False)
    assert len(calls) == 2
    assert every["train_seconds"] <= every["total_seconds"] - 2.0
    once = run_experiment(config(synthetic_dir, tmp_path, name="once", training=training,
                                 eval_every_epoch=False), progress=False)
    assert len(calls) == 3
    assert (every["clean_accuracy"], every["attack_success_rate"]) == (
        once["clean_accuracy"], once["attack_success_rate"])
    assert every["history"][-1]["clean_accuracy"] == every["clean_accuracy"]
    read = lambda name: (tmp_path / "runs" / name / "predictions.jsonl").read_text()
    assert read("every") == read("once")


def test_epoch_batches_keep_the_order_by_default_and_group_lengths_on_request():
    import random

    from poisonlab.training.trainer import epoch_batches
    plain = epoch_batches(100, 16, random.Random(0))
    order = list(range(100))
    random.Random(0).shuffle(order)
    assert plain == [order[i:i + 16] for i in range(0, 100, 16)]  # the order runs always had

    lengths = [random.Random(i).randint(5, 120) for i in range(1000)]
    grouped = epoch_batches(1000, 16, random.Random(0), lengths)
    assert sorted(i for batch in grouped for i in batch) == list(range(1000))
    assert sorted(len(b) for b in grouped) == [8] + [16] * 62
    padding = lambda batches: sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b)
                                  for b in batches)
    assert padding(grouped) < padding(epoch_batches(1000, 16, random.Random(0))) / 5
    assert grouped == epoch_batches(1000, 16, random.Random(0), lengths)
    first = [lengths[b[0]] for b in grouped[:8]]
    assert first != sorted(first, reverse=True)  # the batches themselves are shuffled
