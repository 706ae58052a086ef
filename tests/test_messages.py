"""What poisonlab writes and says: file modes that follow the umask, strict JSON, one-line errors
that name the right thing (empty --set keys, a section's own fields, data and output paths), and
repair defaults that build (the `tuning` field, the docs' Python example)."""

import errno
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from poisonlab.cli import main
from poisonlab.io import write_json, write_text

RUN = """\
name: ok
data: {{name: {data}}}
model: {{name: tiny-bert}}
attack: {{name: badnet}}
tuning: full
training: {{epochs: 1, max_length: 16}}
output_dir: {out}
"""

TINY_REPAIR = ["--train-size", "40", "--test-size", "40", "--quiet",
               "--set", "training.epochs=1", "--set", "training.max_length=16"]


@pytest.fixture
def config(tmp_path, synthetic_dir):
    path = tmp_path / "c.yaml"
    path.write_text(RUN.format(data=synthetic_dir, out=tmp_path / "runs"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny-bert run (1 epoch on synthetic data) and its data folder, made once."""
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("messages")
    data = write_jsonl_split(root / "synthetic", synthetic_splits())
    path = root / "c.yaml"
    path.write_text(RUN.format(data=data, out=root / "runs"), encoding="utf-8")
    assert main(["run", str(path), "--quiet"]) == 0
    return root / "runs" / "ok", data


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("poisonlab: error: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)
    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


# 1. file modes
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_and_helper_folders_follow_the_umask(tmp_path, umask, mask):
    from poisonlab.io import apply_umask
    umask(mask)
    assert (write_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777) == 0o666 & ~mask
    assert (write_json(tmp_path / "m.json", {}).stat().st_mode & 0o777) == 0o666 & ~mask
    folder = apply_umask(tempfile.mkdtemp(dir=tmp_path))
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~mask


# 2. strict JSON
def test_metrics_json_writes_non_finite_numbers_as_null(tmp_path):
    data = {"ca": float("nan"), "asr": np.float32("inf"), "loss": np.float64(0.25),
            "count": np.int64(3), "history": [{"loss": -math.inf}, (np.float32(0.5), True)]}
    text = write_json(tmp_path / "metrics.json", data).read_text()

    def refuse(constant):
        raise AssertionError(f"bare {constant} in {text}")
    assert json.loads(text, parse_constant=refuse) == {
        "ca": None, "asr": None, "loss": 0.25, "count": 3,
        "history": [{"loss": None}, [0.5, True]]}


# 3. --set with an empty key
@pytest.mark.parametrize("assignment,message", [
    ("=1", "--set '=1': the key before '=' is empty (e.g. --set training.epochs=1)"),
    ("training..epochs=1", "--set 'training..epochs=1': the key 'training..epochs' has an empty "
                           "part between dots (e.g. --set training.epochs=1)")])
def test_set_with_an_empty_key_says_so(config, capsys, assignment, message):
    assert main(["run", str(config), "--set", assignment]) == 2
    assert one_line_error(capsys) == f"poisonlab: error: {message}"


# 4. unknown nested key
def test_unknown_nested_key_lists_the_fields_of_its_section(config, capsys):
    assert main(["run", str(config), "--set", "training.epoch=1"]) == 2
    err = one_line_error(capsys)
    assert "unknown field 'training.epoch' (valid: epochs, batch_size, learning_rate" in err
    assert "output_dir" not in err


def test_unknown_key_in_an_optional_or_list_section_lists_that_sections_fields():
    from pydantic import BaseModel, ConfigDict

    from poisonlab.errors import ConfigError
    from poisonlab.registry import validate_config

    class Part(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = 1

    class Whole(BaseModel):
        model_config = ConfigDict(extra="forbid")
        maybe: Part | None = None
        many: list[Part] = []
        named: dict[str, Part] = {}

    for values, field in [({"maybe": {"sise": 2}}, "maybe.sise"),
                          ({"many": [{}, {"sise": 2}]}, "many.1.sise"),
                          ({"named": {"a": {"sise": 2}}}, "named.a.sise")]:
        with pytest.raises(ConfigError, match=re.escape(f"unknown field '{field}' (valid: size)")):
            validate_config(Whole, values, where="w")
    with pytest.raises(ConfigError, match=re.escape("(valid: maybe, many, named)")):
        validate_config(Whole, {"other": 1}, where="w")


# 5. --data-dir
def test_data_dir_that_is_a_file_says_so(config, tmp_path, capsys):
    afile = tmp_path / "data.txt"
    afile.write_text("not a folder")
    assert main(["--data-dir", str(afile), "run", str(config), "--set", "data.name=sst2"]) == 2
    assert one_line_error(capsys) == (
        f"poisonlab: error: data directory {afile} is a file, not a folder")


def test_data_dir_is_accepted_after_the_subcommand_and_wins(config, tmp_path, capsys):
    first, last = tmp_path / "first", tmp_path / "last"
    assert main(["--data-dir", str(first), "run", str(config), "--set", "data.name=sst2",
                 "--data-dir", str(last)]) == 2
    assert one_line_error(capsys) == f"poisonlab: error: data directory {last} does not exist"
    with pytest.raises(SystemExit) as done:  # nested subcommands take it too
        main(["icl", "run", "--help"])
    assert done.value.code == 0 and "--data-dir" in capsys.readouterr().out


# 6. output paths
def test_output_dir_that_is_a_file_is_one_line(config, tmp_path, capsys):
    afile = tmp_path / "results"
    afile.write_text("a file where the runs should go")
    assert main(["run", str(config), "--quiet", "--output-dir", str(afile)]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"poisonlab: error: cannot write {afile}"), err


def test_unwritable_output_dir_is_one_line(config, tmp_path, capsys, monkeypatch):
    # Tests run as root, which ignores a 0o500 folder: refuse mkdir under it instead.
    locked = tmp_path / "locked"
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path) == locked or locked in Path(path).parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", mkdir)
    assert main(["run", str(config), "--quiet", "--output-dir", str(locked)]) == 2
    err = one_line_error(capsys)
    assert re.fullmatch(rf"poisonlab: error: cannot write {re.escape(str(locked))}\S*: "
                        r"Permission denied", err), err


def test_other_os_errors_stay_tracebacks(config, monkeypatch):
    def disk_full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "metrics.json")
    monkeypatch.setattr("poisonlab.commands.run._run", disk_full)
    with pytest.raises(OSError, match="No space left"):
        main(["run", str(config)])


# 7. repair tuning
@pytest.mark.parametrize("name,default", [("finetune", {"r": 8, "alpha": 16}),
                                          ("fineprune", {"r": 8, "alpha": 16}),
                                          ("nad", {"r": 8, "alpha": 16}),
                                          ("w2sdefense", {"r": 512, "alpha": 512})])
def test_repair_tuning_default_builds_and_set_fields_merge_into_it(name, default):
    from poisonlab.defenses.repair_base import REPAIRS

    def chosen(tuning):
        return {"name": tuning.name, "r": tuning.config.r, "alpha": tuning.config.alpha}

    repair = REPAIRS.build(name)
    assert chosen(repair.config.tuning) == {"name": "lora", **default}
    assert repair.build_tuning().name == "lora"
    changed = REPAIRS.build(name, {"tuning": {"r": 64}}).config
    assert chosen(changed.tuning) == {"name": "lora", **default, "r": 64}
    assert type(changed).model_validate(changed.model_dump()).tuning == changed.tuning


def test_repair_command_runs_with_the_default_tuning_and_a_set_field(finished_run, tmp_path,
                                                                     capsys):
    run, data = finished_run
    base = ["repair", str(run), "--defense", "finetune", "--data", str(data), *TINY_REPAIR]
    assert main([*base, "--output-dir", str(tmp_path / "default")]) == 0
    assert main([*base, "--output-dir", str(tmp_path / "r4"), "--set", "tuning.r=4"]) == 0
    recorded = yaml.safe_load((tmp_path / "r4" / "ok__finetune" / "config.yaml").read_text())
    assert {k: recorded["repair"]["tuning"][k] for k in ("name", "r", "alpha")} == {
        "name": "lora", "r": 4, "alpha": 16}


def test_the_python_example_of_docs_repair_runs(finished_run):
    run, data = finished_run
    doc = (Path(__file__).parents[1] / "docs" / "repair.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    # The same code on tiny models and data: every replaced piece must be in the docs.
    small = {"teacher": "tiny-bert", "training": {"epochs": 1, "max_length": 16},
             "teacher_training": {"epochs": 1, "max_length": 16}}
    for old, new in [('"runs/my-poisoned-run"', repr(str(run))),
                     ('name="sst2", train_size=500', f"name={str(data)!r}, train_size=40"),
                     ('{"preset": "badnet"', '{**SMALL, "preset": "badnet"')]:
        assert old in code, (old, code)
        code = code.replace(old, new)
    namespace = {"SMALL": small}
    exec(compile(code, "docs/repair.md", "exec"), namespace)
    assert namespace["repaired"].trained_state
