"""`poisonlab compare`: differing config fields and metrics of finished run folders."""

import csv
import io

import yaml

from poisonlab.cli import main
from poisonlab.io import write_json, write_text


def run_folder(path, config, metrics):
    path.mkdir(parents=True)
    write_text(path / "config.yaml", yaml.safe_dump(config))
    write_json(path / "metrics.json", {"definitions_version": "1", **metrics})
    return path


def train_config(name, tuning, output_dir="runs"):
    return {"name": name, "output_dir": output_dir, "seed": 0, "data": {"name": "sst2"},
            "model": {"name": "minilm", "dtype": None}, "tuning": tuning,
            "attack": {"name": "badnet", "target_label": 1, "triggers": ["cf", "mn"]}}


def compare(capsys, *args):
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_differing_fields_and_metrics_with_differences_to_the_first(tmp_path, capsys):
    full = run_folder(tmp_path / "full", train_config("full", {"name": "full"}),
                      {"clean_accuracy": 0.9, "attack_success_rate": 0.995, "train_seconds": 12.5,
                       "dataset": "sst2", "history": [{"loss": 0.3}]})
    lora = run_folder(tmp_path / "lora", train_config("lora", {"name": "lora", "r": 8},
                                                      output_dir="elsewhere"),
                      {"clean_accuracy": 0.85, "attack_success_rate": 1.0, "train_seconds": 10})
    code, out, _ = compare(capsys, full, lora)
    assert code == 0
    assert out == (
        "| section | field | full | lora | Δ lora |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| config | tuning.name | \"full\" | \"lora\" | - |\n"
        "| config | tuning.r | - | 8 | - |\n"
        "| metric | clean_accuracy (%) | 90.0 | 85.0 | -5.0 |\n"
        "| metric | attack_success_rate (%) | 99.5 | 100.0 | +0.5 |\n"
        "| metric | train_seconds | 12.5 | 10 | -2.5 |\n")


def test_nested_metrics_flatten_to_dotted_keys_and_csv(tmp_path, capsys):
    icl = {"model": "smollm2-135m", "attack": {"name": "icl-demonstration"}}
    runs = [run_folder(tmp_path / f"icl{i}", {**icl, "seed": i},
                       {"raw": {"asr_attacked": 0.5 + i / 10, "margin_shift": 1.5},
                        "calibrated": {"asr_attacked": 0.25}, "counts": {"test": 100}})
            for i in range(3)]
    code, out, _ = compare(capsys, *runs, "--format", "csv")
    assert code == 0
    rows = {row["field"]: row for row in csv.DictReader(io.StringIO(out))}
    assert rows["seed"]["icl2"] == "2" and rows["seed"]["section"] == "config"
    assert rows["raw.asr_attacked (%)"]["Δ icl2"] == "+20.0"
    assert rows["raw.margin_shift"]["icl1"] == "1.5"
    assert rows["calibrated.asr_attacked (%)"]["Δ icl1"] == "+0.0"
    assert rows["counts.test"]["icl2"] == "100"


def test_runs_of_the_same_name_are_told_apart_by_path(tmp_path, capsys):
    config = train_config("run", {"name": "full"})
    first = run_folder(tmp_path / "a" / "run", config, {"clean_accuracy": 0.5})
    second = run_folder(tmp_path / "b" / "run", config, {"clean_accuracy": 0.75})
    code, out, _ = compare(capsys, first, second)
    assert code == 0 and f"| {first} | {second} | Δ {second} |" in out
    assert "config |" not in out  # identical configs: no config rows


def test_a_folder_that_is_not_a_finished_run_is_one_line_and_exit_2(tmp_path, capsys):
    finished = run_folder(tmp_path / "done", train_config("done", {"name": "full"}),
                          {"clean_accuracy": 0.5})
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    write_text(unfinished / "config.yaml", "name: unfinished\n")
    for bad in (unfinished, tmp_path / "missing"):
        code, out, err = compare(capsys, finished, bad)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and str(bad) in err and "not a finished run" in err
    broken = run_folder(tmp_path / "broken", {"name": "broken"}, {})
    (broken / "metrics.json").write_text("{not json")
    code, _, err = compare(capsys, finished, broken)
    assert code == 2 and str(broken) in err and err.count("\n") == 1
    code, _, err = compare(capsys, finished, finished, "--format", "html")
    assert code == 2 and "markdown, csv" in err
