"""Experiment-tracker pass-through (`training.report_to`): what reaches a tracker, the error when
its library is missing, and that the field leaves run identities alone."""

import importlib.util
import json
from pathlib import Path

import pytest

from poisonlab.cli import main
from poisonlab.errors import ConfigError
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.rundir import config_hash
from poisonlab.training import tracking


def config(synthetic_dir, tmp_path, report_to, **overrides):
    base = {"name": "tracked", "data": {"name": str(synthetic_dir), "train_size": 64},
            "model": {"name": "tiny-bert"},
            "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
            "training": {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3,
                         "max_length": 32, "report_to": report_to},
            "output_dir": str(tmp_path / "runs")}
    return load_run_config(base={**base, **overrides})


class FakeTracker:
    """Records what an accelerate tracker would be sent."""

    opened: list["FakeTracker"] = []

    def __init__(self, run_name: str, folder: Path):
        self.run_name, self.folder = run_name, folder
        self.config: dict = {}
        self.logs: list[tuple[int, dict]] = []
        self.finished = False
        FakeTracker.opened.append(self)

    def start(self):
        pass

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None):
        self.logs.append((step, values))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    """The tensorboard slot of the tracker table taken by a recording fake (found installed)."""
    FakeTracker.opened = []
    monkeypatch.setitem(tracking.TRACKER_FACTORIES, "tensorboard", FakeTracker)
    monkeypatch.setitem(tracking.TRACKER_LIBRARIES, "tensorboard", "json")
    return FakeTracker


def test_a_tracker_gets_loss_and_learning_rate_per_step_and_the_final_metrics(
        synthetic_dir, tmp_path, fake_tensorboard):
    cfg = config(synthetic_dir, tmp_path, ["tensorboard"])
    metrics = run_experiment(cfg, progress=False)
    (tracker,) = fake_tensorboard.opened
    assert tracker.run_name == "tracked" and tracker.finished
    assert tracker.config["training.learning_rate"] == 3e-3
    assert tracker.config["attack.name"] == "badnet"
    steps = [(step, values) for step, values in tracker.logs if "train/loss" in values]
    assert [step for step, _ in steps] == list(range(1, 9))  # 64 examples / 16, 2 epochs
    assert all(values["train/learning_rate"] > 0 for _, values in steps)
    assert steps[-1][1]["train/epoch"] == 2.0
    epochs = [values for _, values in tracker.logs if "epoch/loss" in values]
    assert [values["epoch/epoch"] for values in epochs] == [1, 2]
    assert epochs[-1]["epoch/loss"] == metrics["history"][-1]["loss"]
    final_step, final = tracker.logs[-1]
    assert final_step == 8
    assert final == {"final/clean_accuracy": metrics["clean_accuracy"],
                     "final/attack_success_rate": metrics["attack_success_rate"]}
    # the run folder is still the whole record
    assert (cfg.run_dir / "metrics.json").is_file()


def test_a_failed_run_still_closes_its_trackers(synthetic_dir, tmp_path, fake_tensorboard,
                                                monkeypatch):
    from poisonlab.experiment import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")
    monkeypatch.setattr(pipeline, "evaluate", broken)
    with pytest.raises(RuntimeError):
        run_experiment(config(synthetic_dir, tmp_path, ["tensorboard"]), progress=False)
    assert fake_tensorboard.opened[0].finished


def test_no_tracker_is_opened_by_default(synthetic_dir, tmp_path, fake_tensorboard):
    cfg = config(synthetic_dir, tmp_path, [])
    run_experiment(cfg, progress=False)
    assert fake_tensorboard.opened == []
    assert cfg.training.report_to == []


def test_a_missing_tracker_library_is_a_config_error_before_any_folder(
        synthetic_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(tracking.TRACKER_LIBRARIES, "wandb", "poisonlab_no_such_package")
    cfg = config(synthetic_dir, tmp_path, ["wandb"])
    with pytest.raises(ConfigError, match=r"training\.report_to.*wandb.*poisonlab\[tracking\]"):
        run_experiment(cfg, progress=False)
    assert not (tmp_path / "runs").exists()
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(cfg.resolved()))
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training.report_to" in err and "Traceback" not in err


def test_an_unknown_tracker_name_lists_the_valid_ones(synthetic_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"training\.report_to.*tensorboard.*wandb.*mlflow"):
        config(synthetic_dir, tmp_path, ["neptune"])


def test_report_to_is_not_part_of_a_runs_identity(synthetic_dir, tmp_path):
    """A run written before the field existed keeps its hash, and turning a tracker on for a
    finished run (or study) reuses it."""
    plain = config(synthetic_dir, tmp_path, []).resolved()
    old = json.loads(json.dumps(plain))
    del old["training"]["report_to"]
    assert config_hash(plain) == config_hash(old)
    assert config_hash(config(synthetic_dir, tmp_path, ["tensorboard", "mlflow"]).resolved()) \
        == config_hash(old)


def test_components_trainings_do_not_take_report_to():
    """Only a run's own training reports to trackers; a component's training refuses the field
    instead of ignoring it."""
    from poisonlab.defenses.repair_base import REPAIRS
    with pytest.raises(ConfigError, match="report_to"):
        REPAIRS.spec({"name": "finetune", "training": {"report_to": ["tensorboard"]}})


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard not installed (pip install 'poisonlab[tracking]')")
def test_tensorboard_writes_event_files_into_the_run_folder(synthetic_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = config(synthetic_dir, tmp_path, ["tensorboard"])
    metrics = run_experiment(cfg, progress=False)
    events = EventAccumulator(str(cfg.run_dir / "tensorboard")).Reload()
    assert {"train/loss", "train/learning_rate", "final/clean_accuracy"} <= set(
        events.Tags()["scalars"])
    assert len(events.Scalars("train/loss")) == 8
    (final,) = events.Scalars("final/clean_accuracy")
    assert final.value == pytest.approx(metrics["clean_accuracy"])
