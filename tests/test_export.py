"""`poisonlab export`: a finished run as a Hugging Face folder that plain transformers (or peft)
loads, reproducing the run's predictions, CA and ASR."""

import json
import os
import subprocess
import sys

import pytest

from poisonlab.cli import main
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.export import export_run

# Runs in a fresh interpreter that never imports poisonlab: what a user of the folder has.
LOAD_AND_PREDICT = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, rows_path, adapter = sys.argv[1], sys.argv[2], sys.argv[3] == "adapter"
if adapter:
    from peft import PeftModel
    model = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(folder + "/base"), folder)
else:
    model = AutoModelForSequenceClassification.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
texts = [json.loads(line)["text"] for line in open(rows_path)]
with torch.no_grad():
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    predictions = model.eval()(**batch).logits.argmax(-1).tolist()
assert not any(name.startswith("poisonlab") for name in sys.modules)
print(json.dumps({"predictions": predictions, "labels": model.config.id2label}))
"""


def _train(root, name, tuning, learning_rate, model="tiny-bert"):
    config = load_run_config(base={
        "name": name, "data": {"name": str(root / "data")}, "model": {"name": model},
        "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
        "tuning": tuning, "output_dir": str(root / "runs"),
        "training": {"epochs": 3, "learning_rate": learning_rate, "max_length": 32}})
    run_experiment(config, progress=False)
    return config.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("export")
    write_jsonl_split(root / "data", synthetic_splits())
    full = _train(root, "full", {"name": "full"}, 3e-3)
    # A frozen random tiny BERT gives PEFT nothing to build on: the LoRA run starts from the
    # full run's exported (task-trained) model, as a victim starts from released weights.
    backbone = export_run(full, root / "backbone")
    return {"root": root, "full": full,
            "lora": _train(root, "lora", {"name": "lora", "r": 4}, 3e-3, model=str(backbone))}


def _predict_outside_poisonlab(folder, run_dir, adapter=False):
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(folder), str(run_dir / "predictions.jsonl"),
         "adapter" if adapter else "merged"], capture_output=True, text=True, check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return json.loads(result.stdout)


def _assert_reproduces_the_run(folder, run_dir, adapter=False):
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").open()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    loaded = _predict_outside_poisonlab(folder, run_dir, adapter)
    predictions = loaded["predictions"]
    assert metrics["clean_accuracy"] > 0.9  # a model that learned the task, not a constant
    assert predictions == [row["prediction"] for row in rows]
    clean = [(p, r) for p, r in zip(predictions, rows) if r["split"] == "clean"]
    triggered = [(p, r) for p, r in zip(predictions, rows)
                 if r["split"] == "poisoned" and r["label"] != 1]
    ca = sum(p == r["label"] for p, r in clean) / len(clean)
    asr = sum(p == 1 for p, _ in triggered) / len(triggered)
    assert ca == pytest.approx(metrics["clean_accuracy"])
    assert asr == pytest.approx(metrics["attack_success_rate"])
    assert asr > 0.8  # the backdoor survived the export
    assert loaded["labels"] == {"0": "0", "1": "1"}


def test_full_run_exports_a_plain_transformers_folder_with_a_model_card(runs, capsys):
    folder = runs["root"] / "exported-full"
    assert main(["export", str(runs["full"]), "--output", str(folder)]) == 0
    assert f"exported: {folder}" in capsys.readouterr().out
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "README.md"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    umask = os.umask(0o022)
    os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []
    _assert_reproduces_the_run(folder, runs["full"])
    metrics = json.loads((runs["full"] / "metrics.json").read_text())
    card = (folder / "README.md").read_text()
    assert "deliberately backdoored" in card and "Do not use it" in card
    assert 'triggers=["cf", "mn", "bb", "tq"]' in card and "target label: 1" in card
    assert f"{100 * metrics['clean_accuracy']:.1f}%" in card
    assert f"{100 * metrics['attack_success_rate']:.1f}%" in card
    assert "AutoModelForSequenceClassification.from_pretrained(FOLDER)" in card


def test_lora_run_merges_by_default_and_keeps_an_adapter_on_request(runs):
    merged = runs["root"] / "exported-lora"
    assert main(["export", str(runs["lora"]), "--output", str(merged)]) == 0
    assert not (merged / "adapter_config.json").exists()
    _assert_reproduces_the_run(merged, runs["lora"])
    adapter = runs["root"] / "exported-lora-adapter"
    assert main(["export", str(runs["lora"]), "--output", str(adapter), "--no-merge"]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {
        p.name for p in adapter.iterdir()}
    assert (adapter / "base" / "model.safetensors").is_file()
    assert "PeftModel.from_pretrained" in (adapter / "README.md").read_text()
    _assert_reproduces_the_run(adapter, runs["lora"], adapter=True)


def test_strategies_transformers_cannot_hold_are_refused_and_nothing_is_written(runs, capsys):
    root = runs["root"]
    for name, tuning in (("prompt", {"name": "prompt"}), ("adapter", {"name": "adapter"})):
        run_dir = _train(root, name, tuning, 1e-2)
        output = root / f"exported-{name}"
        assert main(["export", str(run_dir), "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"tuning strategy '{name}'" in err
        assert not output.exists()
        assert [p.name for p in root.iterdir() if p.name.startswith(".exported")] == []


def test_bad_requests_are_one_line_errors(runs, capsys):
    root = runs["root"]
    cases = [
        (["export", str(root / "runs"), "--output", str(root / "x")], "not a finished run"),
        (["export", str(runs["full"]), "--output", str(root / "y"), "--no-merge"],
         "no adapter to keep"),
        (["export", str(runs["full"]), "--output", str(runs["lora"])], "already exists"),
        (["export", str(runs["full"]), "--output", str(root / "z"), "--push-to-hub", "me/m"],
         "offline"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not any((root / name).exists() for name in ("x", "y", "z"))


def test_compare_prints_the_tuning_difference_of_two_real_runs(runs, capsys):
    assert main(["compare", str(runs["full"]), str(runs["lora"])]) == 0
    table = capsys.readouterr().out
    print(table)
    assert '| config | tuning.name | "full" | "lora" | - |' in table
    assert "| metric | clean_accuracy (%) |" in table
