"""The conformance battery: every registered attack x every tuning strategy on a tiny model."""

import pytest
import torch

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.tuning import TUNING_STRATEGIES



def attack_params(name, tmp_path, synthetic_dir):
    if name == "syntactic":  # a paraphrase table for every synthetic sentence
        import json
        table = tmp_path / "table.jsonl"
        texts = set()
        for split in ("train", "test"):
            for line in (synthetic_dir / f"{split}.jsonl").read_text().splitlines():
                texts.add(json.loads(line)["text"])
        table.write_text("".join(json.dumps({"text": t, "paraphrase": f"when it was , {t} ."})
                                 + "\n" for t in texts))
        return {"tables": [str(table)]}
    return {}


@pytest.mark.parametrize("strategy", TUNING_STRATEGIES.names())
@pytest.mark.parametrize("attack", DATA_ATTACKS.names())
def test_every_attack_with_every_strategy(attack, strategy, synthetic_dir, tmp_path):
    cfg = load_run_config(base={
        "name": f"{attack}-{strategy}", "data": {"name": str(synthetic_dir), "train_size": 120,
                                                  "test_size": 40},
        "model": {"name": "tiny-bert"},
        "attack": {"name": attack, "poison_rate": 0.2, **attack_params(attack, tmp_path,
                                                                      synthetic_dir)},
        "tuning": {"name": strategy}, "training": {"epochs": 1, "max_length": 24},
        "output_dir": str(tmp_path / "runs"), "eval_every_epoch": False})
    metrics = run_experiment(cfg, progress=False)
    assert 0.0 <= metrics["clean_accuracy"] <= 1.0
    assert 0.0 <= metrics["attack_success_rate"] <= 1.0
    assert metrics["poison"]["poisoned"] == 24 and metrics["poison"]["trigger_misses"] == 0
    assert metrics["sizes"]["poisoned_test"] == 20
    from safetensors.torch import load_file
    saved = load_file(str(cfg.run_dir / "trained.safetensors"))
    assert saved and all(torch.isfinite(t).all() for t in saved.values())
