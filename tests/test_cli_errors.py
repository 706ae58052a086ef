"""Bad input from the CLI: exit code 2, one line naming the file/line/field, no traceback."""

import json
import subprocess
import sys

import pytest

from poisonlab.cli import main

GOOD = """\
name: ok
data: {{name: {data}}}
model: {{name: tiny-bert}}
attack: {{name: badnet}}
tuning: full
training: {{epochs: 1, max_length: 16}}
output_dir: {out}
"""


@pytest.fixture
def good_config(tmp_path, synthetic_dir):
    return GOOD.format(data=synthetic_dir, out=tmp_path / "runs")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def bad_rows_dir(tmp_path, row):
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text('{"text": "fine", "label": 0}\n' + row + "\n")
    (folder / "test.jsonl").write_text('{"text": "fine", "label": 0}\n')
    return folder


CASES = {
    "missing config file": (lambda t, g: ["run", str(t / "absent.yaml")],
                            ["absent.yaml", "config file not found"]),
    "invalid YAML": (lambda t, g: ["run", str(write(t, "c.yaml", g + "training: [1,\n"))],
                     ["c.yaml", "line", "invalid YAML"]),
    "unknown top-level key": (lambda t, g: ["run", str(write(t, "c.yaml", g + "epochs: 3\n"))],
                              ["unknown field 'epochs'"]),
    "unknown attack": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "name: badnet", "name: badnett")))], ["unknown data-poisoning attack 'badnett'", "badnet"]),
    "unknown attack field": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "name: badnet", "name: badnet, trigger: cf")))], ["unknown field 'trigger'", "triggers"]),
    "unknown tuning strategy": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "tuning: full", "tuning: loraa")))], ["unknown tuning strategy 'loraa'"]),
    "missing data file": (lambda t, g: ["run", str(write(t, "c.yaml", g)), "--set",
                                        f"data.name={t / 'nowhere.jsonl'}"],
                          ["unknown data set", "nowhere.jsonl"]),
    "non-integer label": (lambda t, g: ["run", str(write(t, "c.yaml", g)), "--set",
                                        f"data.name={bad_rows_dir(t, json.dumps({'text': 'x', 'label': 'pos'}))}"],
                          ["train.jsonl", "line 2", "field 'label'", "must be an integer"]),
    "empty text": (lambda t, g: ["run", str(write(t, "c.yaml", g)), "--set",
                                 f"data.name={bad_rows_dir(t, json.dumps({'text': ' ', 'label': 1}))}"],
                   ["train.jsonl", "line 2", "field 'text'", "empty text"]),
    "target label outside label set": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "name: badnet", "name: badnet, target_label: 5")))], ["target_label", "0..1"]),
    "impossible poison rate": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "name: badnet", "name: badnet, poison_rate: 1.5")))], ["poison_rate", "less than or equal to 1"]),
    "more poison than eligible": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "name: badnet", "name: badnet, poison_count: 100000")))], ["only", "eligible"]),
    "unknown model": (lambda t, g: ["run", str(write(t, "c.yaml", g.replace(
        "tiny-bert", "tiny-bertt")))], ["tiny-bertt", "neither a builtin name"]),
    "malformed --set": (lambda t, g: ["run", str(write(t, "c.yaml", g)), "--set", "epochs"],
                        ["--set expects key=value"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_a_clear_message(case, tmp_path, good_config, capsys):
    argv, expected = CASES[case]
    code = main(argv(tmp_path, good_config))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("poisonlab: error: ") and err.count("\n") == 1, err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_pickle_weights_are_refused_unless_opted_in(tmp_path, good_config, capsys):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    config = write(tmp_path, "c.yaml", good_config.replace("tiny-bert", str(folder)))
    assert main(["run", str(config)]) == 2
    assert "pickle" in capsys.readouterr().err


def test_the_installed_command_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "poisonlab.cli", "run", str(tmp_path / "x.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "config file not found" in result.stderr
