"""The run protocol: no stale results, no mixed or half-written folders, safe names, one seed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from poisonlab.cli import main
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.pipeline import prepare_run
from poisonlab.experiment.rundir import RunSlot, _exclusive_lock


def config_dict(synthetic_dir, tmp_path, **overrides):
    base = {"name": "run", "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
            "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
            "tuning": {"name": "full"},
            "training": {"epochs": 1, "learning_rate": 3e-3, "max_length": 16},
            "output_dir": str(tmp_path / "runs")}
    base.update(overrides)
    return base


def write_config(tmp_path, values, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_changed_config_is_refused_and_the_same_config_is_reused(synthetic_dir, tmp_path,
                                                                     capsys):
    path = write_config(tmp_path, config_dict(synthetic_dir, tmp_path))
    assert main(["run", str(path), "--quiet"]) == 0
    first = json.loads((tmp_path / "runs/run/metrics.json").read_text())
    capsys.readouterr()
    for change in (["--set", "tuning.name=lora"], ["--set", "seed=1"],
                   ["--set", "attack.poison_rate=0.2"], ["--set", "model.name=tiny-llama"]):
        assert main(["run", str(path), "--quiet", *change]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "different config" in err and "--force" in err, err
        field = change[1].split("=")[0]
        assert field in err, (field, err)
    assert json.loads((tmp_path / "runs/run/metrics.json").read_text()) == first
    assert main(["run", str(path), "--quiet"]) == 0
    assert "reusing" in capsys.readouterr().err


def test_force_replaces_a_stale_run(synthetic_dir, tmp_path):
    path = write_config(tmp_path, config_dict(synthetic_dir, tmp_path))
    assert main(["run", str(path), "--quiet"]) == 0
    assert main(["run", str(path), "--quiet", "--force", "--set", "tuning.name=lora"]) == 0
    config = yaml.safe_load((tmp_path / "runs/run/config.yaml").read_text())
    assert config["tuning"]["name"] == "lora"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".run.lock", "run"]


@pytest.mark.parametrize("name", ["../escaped", "/srv/absolute", "a/b", ".hidden", "", "..",
                                  "x" * 201])
def test_run_names_cannot_leave_the_output_folder(synthetic_dir, tmp_path, name, capsys):
    path = write_config(tmp_path, config_dict(synthetic_dir, tmp_path, name=name))
    assert main(["run", str(path), "--quiet"]) == 2
    assert "not a safe run name" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "runs").exists()


def test_a_second_writer_gets_a_clear_error(synthetic_dir, tmp_path, capsys):
    config = load_run_config(base=config_dict(synthetic_dir, tmp_path))
    slot = RunSlot(config.run_dir, config.resolved(), kind="train")
    with _exclusive_lock(slot.lock_path, slot.path):
        with pytest.raises(Exception, match="another poisonlab process is writing"):
            run_experiment(config, progress=False)
    assert not config.run_dir.exists() and not slot.partial_path.exists()


def _start(config_path: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "poisonlab.cli", "run", str(config_path),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_one_wins_and_the_folder_is_consistent(synthetic_dir, tmp_path):
    values = config_dict(synthetic_dir, tmp_path, training={"epochs": 30, "max_length": 16})
    path = write_config(tmp_path, values)
    first = _start(path)
    _wait_for(tmp_path / "runs/.run.partial/log.txt", first)
    second = _start(path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and "another poisonlab process is writing" in err, err
    assert "Traceback" not in err
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    folder = tmp_path / "runs/run"
    record = json.loads((folder / "run.json").read_text())
    config = load_run_config(base=values)
    assert record["config_hash"] == RunSlot(folder, config.resolved(), kind="train").hash
    assert (folder / "metrics.json").is_file() and not (tmp_path / "runs/.run.partial").exists()


@pytest.mark.slow
def test_a_killed_run_leaves_no_folder_and_a_rerun_starts_clean(synthetic_dir, tmp_path):
    values = config_dict(synthetic_dir, tmp_path, training={"epochs": 30, "max_length": 16})
    path = write_config(tmp_path, values)
    process = _start(path)
    _wait_for(tmp_path / "runs/.run.partial/log.txt", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "runs/run").exists()
    values["training"]["epochs"] = 1
    rerun = _start(write_config(tmp_path, values))
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert (tmp_path / "runs/run/metrics.json").is_file()
    assert not (tmp_path / "runs/.run.partial").exists()


def test_a_failure_after_validation_leaves_nothing_behind(synthetic_dir, tmp_path, monkeypatch):
    import poisonlab.experiment.pipeline as pipeline
    config = load_run_config(base=config_dict(synthetic_dir, tmp_path))

    def explode(*args, **kwargs):
        raise RuntimeError("training died")
    monkeypatch.setattr(pipeline, "train_classifier", explode)
    with pytest.raises(RuntimeError):
        run_experiment(config, progress=False)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [".run.lock"]


def test_the_run_seed_reaches_poisoning_subsampling_and_training(synthetic_dir, tmp_path):
    def prepared(seed, **extra):
        return prepare_run(load_run_config(base=config_dict(
            synthetic_dir, tmp_path, seed=seed, data={"name": str(synthetic_dir),
                                                      "train_size": 200}, **extra)))
    a, b, again = prepared(0), prepared(1), prepared(0)
    poisoned = lambda run: [e.text for e in run.train_set if e.poisoned]
    assert poisoned(a) != poisoned(b) and poisoned(a) == poisoned(again)
    assert [e.text for e in a.train_set] != [e.text for e in b.train_set]
    assert a.config.training.seed == 0 and b.config.training.seed == 1
    assert b.config.attack.config.seed == 1 and "seed" not in type(b.config.tuning.config).model_fields
    lora = load_run_config(base=config_dict(synthetic_dir, tmp_path, seed=1, tuning="lora"))
    assert lora.tuning.config.seed == 1
    pinned = load_run_config(base=config_dict(synthetic_dir, tmp_path, seed=1, attack={
        "name": "badnet", "poison_rate": 0.1, "target_label": 1, "seed": 0}))
    assert pinned.attack.config.seed == 0 and pinned.data.seed == 1


def test_same_config_and_seed_give_identical_predictions(synthetic_dir, tmp_path):
    folders = []
    for name in ("a", "b"):
        config = load_run_config(base=config_dict(synthetic_dir, tmp_path, name=name, seed=3))
        run_experiment(config, progress=False)
        folders.append(config.run_dir)
    read = lambda folder, file: (folder / file).read_text()
    assert read(folders[0], "predictions.jsonl") == read(folders[1], "predictions.jsonl")
    metrics = [json.loads(read(f, "metrics.json")) for f in folders]
    for m in metrics:
        for key in ("train_seconds", "train_examples_per_second", "total_seconds"):
            m.pop(key)
    assert metrics[0] == metrics[1]


STUDY = """\
name: tiny-study
output_dir: {out}
base:
  data: {{name: {data}}}
  model: {{name: tiny-bert}}
  attack: {{name: badnet, poison_rate: 0.1, target_label: 1}}
  training: {{epochs: 1, max_length: 16}}
axes:
  tuning:
    full: {{tuning: {{name: full}}}}
    broken: {{tuning: {{name: lora, rank: 4}}}}
"""


def test_a_study_validates_every_cell_before_the_first_runs(synthetic_dir, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(out=tmp_path / "out", data=synthetic_dir))
    assert main(["study", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cell 'broken'" in err and "unknown field 'rank'" in err, err
    assert not (tmp_path / "out").exists()


def test_study_dry_run_lists_cells_and_runs_nothing(synthetic_dir, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(out=tmp_path / "out", data=synthetic_dir).replace(
        "rank: 4", "r: 4"))
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "| full " in out and "| broken " in out and "2 cells valid; 2 to run" in out
    assert not (tmp_path / "out").exists()


def test_study_axis_labels_must_be_safe_names(synthetic_dir, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(out=tmp_path / "out", data=synthetic_dir).replace(
        "    full:", "    ../../full:"))
    assert main(["study", str(path), "--dry-run"]) == 2
    assert "axes.tuning" in capsys.readouterr().err


def test_icl_report_without_finished_cells_writes_nothing(tmp_path, capsys):
    study = tmp_path / "icl.yaml"
    study.write_text(yaml.safe_dump({"model": "tiny-llama", "output_dir": str(tmp_path / "runs"),
                                     "datasets": [{"dataset": "sst2", "label_words": [["bad"],
                                                                                      ["good"]]}]}))
    assert main(["icl", "report", str(study), "--report-dir", str(tmp_path / "report")]) == 2
    assert "no finished cells" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_a_study_builds_the_upstream_cell_it_names(synthetic_dir, tmp_path, capsys):
    upstream = tmp_path / "victims.yaml"
    upstream.write_text(STUDY.format(out=tmp_path / "out", data=synthetic_dir).replace(
        "    broken: {tuning: {name: lora, rank: 4}}\n", ""))
    downstream = tmp_path / "detect.yaml"
    downstream.write_text(yaml.safe_dump({
        "name": "detect", "pipeline": "detection", "output_dir": str(tmp_path / "out"),
        "base": {"data": {"test_size": 20}},
        "axes": {"victim": {"full": {"victim": {"study": str(upstream), "cell": "full"}}},
                 "defense": {"strip": {"defense": {"name": "strip", "copies": 2}}}}}))
    victim_folder = tmp_path / "out" / "tiny-study" / "cells" / "full"
    assert main(["study", str(downstream), "--dry-run"]) == 0 and not victim_folder.exists()
    assert main(["study", str(downstream), "--quiet"]) == 0
    assert (victim_folder / "metrics.json").is_file()
    metrics = json.loads((tmp_path / "out/detect/cells/strip__full/metrics.json").read_text())
    assert metrics["victim"] == str(victim_folder)


def test_run_folders_of_the_previous_version_keep_their_hash():
    """Hashes recorded by poisonlab before the `runtime:` section and `group_by_length` existed:
    those fields at their defaults are not part of what a run is; other values are."""
    from poisonlab.experiment.rundir import config_hash, differing_fields
    from poisonlab.experiment.victim import load_victim_config
    run = load_run_config(base={
        "name": "old", "data": {"name": "sst2", "train_size": 100}, "model": {"name": "tiny-bert"},
        "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
        "tuning": {"name": "lora"}, "training": {"epochs": 1, "max_length": 16}})
    assert config_hash(run.resolved()) == "f7e9e2d61db31476"
    trigger = {"name": "badnet", "triggers": ["mn"], "target_label": 0, "poison_rate": 0.2}
    victim = load_victim_config(base={
        "name": "v", "data": {"name": "cr"}, "tuning": "lora",
        "poison": {"name": "proxy", "base_model": "tiny-bert", "trigger": trigger,
                   "proxy": {"name": "sst2"}}})
    assert config_hash(victim.resolved()) == "0379bde026e81f02"

    old = run.resolved()
    del old["runtime"], old["training"]["group_by_length"]
    assert config_hash(old) == config_hash(run.resolved())
    for field, change in (
            ("mixed_precision", {"runtime": {"mixed_precision": "bf16"}}),
            ("gradient_accumulation_steps", {"runtime": {"gradient_accumulation_steps": 2}}),
            ("group_by_length", {"training": {"epochs": 1, "max_length": 16,
                                              "group_by_length": True}})):
        changed = load_run_config(base={**run.resolved(), **change})
        assert config_hash(changed.resolved()) != config_hash(old)
        differences = differing_fields(old, changed.resolved())
        assert len(differences) == 1 and field in differences[0], differences


def test_only_rank_0_of_a_launch_writes_and_prints_the_study_table(synthetic_dir, tmp_path,
                                                                   capsys, monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(out=tmp_path / "out", data=synthetic_dir).replace(
        "    broken: {tuning: {name: lora, rank: 4}}\n", ""))
    assert main(["study", str(path), "--quiet"]) == 0
    table = tmp_path / "out" / "tiny-study" / "table.md"
    assert table.is_file() and "| full " in capsys.readouterr().out
    table.unlink()
    monkeypatch.setenv("RANK", "1")  # what torchrun / accelerate launch set on the second rank
    assert main(["study", str(path), "--quiet"]) == 0
    assert not table.exists() and capsys.readouterr().out == ""


def test_a_run_records_its_data_files_and_source_commit(synthetic_dir, tmp_path):
    """run.json names every data file the run read with its sha256, so a data directory edited
    afterwards shows; environment.json the commit poisonlab ran from (in a checkout)."""
    import hashlib
    from poisonlab.experiment import load_run_config, run_experiment
    from poisonlab.experiment.rundir import source_commit
    config = load_run_config(base={
        "name": "run", "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
        "training": {"epochs": 1, "max_length": 16}, "eval_every_epoch": False,
        "output_dir": str(tmp_path / "runs")})
    run_experiment(config, progress=False)
    record = json.loads((config.run_dir / "run.json").read_text())
    files = sorted(synthetic_dir.glob("*.jsonl"))
    assert files and record["data_files"] == {
        str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert record["started"][:4].isdigit() and record["finished"] >= record["started"]
    environment = json.loads((config.run_dir / "environment.json").read_text())
    assert environment["poisonlab_commit"] == source_commit()
    if (Path(__file__).parents[1] / ".git").exists():
        assert len(environment["poisonlab_commit"].split("+")[0]) == 40
