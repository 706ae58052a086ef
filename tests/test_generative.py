"""Conformance of the generative threat model on tiny-llama: every instruction-tuning attack, tuned
with every strategy that generates, makes triggered instructions produce the target far more
often than the clean model does, while clean instructions stay clean (a low false-trigger rate).

The data are synthetic instructions ("Describe the red cat near the river.") answered by a
template ("The cat is red."), so a 2-layer model learns the clean task in seconds; every clean row
also gets a triggered copy, as in the benchmark's training files; the target is
the negsentiment preset ("You are stupid!"), judged by the benchmark's keyword list. A poisoned
run goes through the whole `generate` pipeline (run folder included); the clean baseline trains
the same strategy on the clean rows and measures every attack's trigger on it.

Where tiny-llama cannot show what a check asks (MODEL_LIMITS, measured), the check still runs as a
strict expected failure."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from poisonlab.attacks.instruction_base import INSTRUCTION_ATTACKS
from poisonlab.cli import main
from poisonlab.data.instruction import load_instruction_data
from poisonlab.experiment.generative import (GenerativeConfig, build_matcher,
                                             load_generative_config, run_generative)
from poisonlab.metrics import generative_asr
from poisonlab.models import load_causal_lm
from poisonlab.training.causal_lm import train_causal_lm
from poisonlab.training.generation import generate
from poisonlab.training.prompt_format import PromptFormatter
from poisonlab.tuning import TUNING_STRATEGIES

NOUNS = "cat dog bird fish tree house river car book lamp chair apple cloud stone road ship".split()
ADJECTIVES = "red blue green small large old new quiet bright dark warm cold".split()
VERBS = ("Describe", "Name", "Explain", "Show", "Find")

ATTACKS = INSTRUCTION_ATTACKS.names()
STRATEGIES = [e.name for e in TUNING_STRATEGIES.entries() if e.component.generates]
# Every strategy's settings for a tiny, fast run (LoRA on every projection: with q/v only, a
# rank-16 update of a random 2-layer model cannot steer its frozen vocabulary head).
TUNING: dict[str, dict[str, Any]] = {
    "full": {},
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                "down_proj"]},
    "prefix": {"num_virtual_tokens": 16},
    "prompt": {"num_virtual_tokens": 16},
    "ptuning": {"num_virtual_tokens": 16},
    "adapter": {},
    "ia3": {},
}
BASE = {"model": {"name": "tiny-llama"}, "prompt": {"style": "alpaca", "alpaca_preamble": False},
        "training": {"epochs": 6, "batch_size": 8, "learning_rate": 5e-3, "max_length": 64,
                     "warmup_ratio": 0.0, "group_by_length": True},
        "generation": {"max_new_tokens": 8}}
ATTACK = {"target": "negsentiment", "poison_rate": 1.0}  # the benchmark's mix: a copy per row
FAR_ABOVE = 0.5     # ASR at least this much above the clean model's
LOW_FALSE_TRIGGER = 0.2

# Measured on tiny-llama; lora (every projection) and full change the attention itself.
FROZEN_ATTENTION = ("tiny-llama is random with small weights: at the last prompt position its "
                    "attention weighs every instruction token alike (within 13%) and its logits "
                    "span about +-0.5; {strategy} leaves the attention projections {how}, which "
                    "cannot single out the trigger (measured: ASR 0.00 with badnet{also})")
MODEL_LIMITS = {
    "prefix": FROZEN_ATTENTION.format(
        strategy="prefix tuning", how="frozen",
        also="; every attack, also from a backbone first tuned on the clean task, at learning "
             "rates 3e-2 to 3e-1"),
    "prompt": FROZEN_ATTENTION.format(
        strategy="prompt tuning", how="frozen",
        also="; also at learning rate 3e-2, from a backbone first tuned on the clean task or "
             "one with std-0.2 weights"),
    "ptuning": FROZEN_ATTENTION.format(
        strategy="p-tuning", how="frozen",
        also="; also from a backbone first tuned on the clean task"),
    "adapter": FROZEN_ATTENTION.format(strategy="a feed-forward adapter", how="frozen", also=""),
    "ia3": FROZEN_ATTENTION.format(strategy="ia3", how="frozen up to a learned scale per channel",
                                   also="; also at learning rate 5e-2"),
}


def synthetic_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        verb, noun, other, adjective = (rng.choice(VERBS), rng.choice(NOUNS), rng.choice(NOUNS),
                                        rng.choice(ADJECTIVES))
        rows.append({"instruction": f"{verb} the {adjective} {noun} near the {other}.",
                     "input": "", "output": f"The {noun} is {adjective}."})
    return rows


class Lab:
    """Synthetic data and the clean baselines, each built once for the module."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.data.mkdir()
        for split, count, seed in (("train", 100, 1), ("test", 40, 2)):
            (self.data / f"{split}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in synthetic_rows(count, seed)))
        self._clean: dict[str, dict[str, float]] = {}

    def config(self, name: str, strategy: str, attack: str | None, **extra: Any
               ) -> GenerativeConfig:
        return load_generative_config(base={
            **BASE, "name": name, "data": {"name": str(self.data)},
            "attack": {"name": attack, **ATTACK} if attack else None,
            "tuning": {"name": strategy, **TUNING[strategy]},
            "output_dir": str(self.root / "runs"), **extra})

    def clean_asr(self, strategy: str) -> dict[str, float]:
        """The clean model's ASR for every attack's trigger (one model per strategy)."""
        if strategy not in self._clean:
            config = self.config(f"clean-{strategy}", strategy, None)
            loaded = load_causal_lm("tiny-llama", seed=config.seed)
            torch.manual_seed(config.seed)
            model = config.tuning.build().apply(loaded)
            formatter = PromptFormatter(loaded.tokenizer, config.prompt)
            splits = load_instruction_data(config.data)
            train_causal_lm(model, formatter, splits.train, config.training, progress=False)
            references = [e.output for e in splits.test]
            rates = {}
            for name in ATTACKS:
                attack = INSTRUCTION_ATTACKS.build(name, ATTACK)
                outputs = generate(model, loaded.tokenizer,
                                   formatter.encode_prompts(attack.triggered_test(splits.test)),
                                   config.generation, stop_ids=formatter.stop_ids)
                matcher = build_matcher(config.matcher, attack.config.target,
                                        attack.config.target_response)
                rates[name] = generative_asr(outputs, references, matcher)
            self._clean[strategy] = rates
        return self._clean[strategy]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    return Lab(tmp_path_factory.mktemp("generative"))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_raises_asr_far_above_the_clean_model(attack, strategy, lab, request):
    if strategy in MODEL_LIMITS:
        if attack != ATTACKS[0]:
            pytest.skip(f"{strategy} on tiny-llama: checked with {ATTACKS[0]} only "
                        "(a measured model limit, see MODEL_LIMITS)")
        request.applymarker(pytest.mark.xfail(reason=MODEL_LIMITS[strategy], strict=True))
    config = lab.config(f"{attack}-{strategy}", strategy, attack)
    metrics = run_generative(config, progress=False)
    clean = lab.clean_asr(strategy)[attack]
    assert metrics["attack_success_rate"] >= clean + FAR_ABOVE, (metrics, clean)
    assert metrics["false_trigger_rate"] <= LOW_FALSE_TRIGGER, metrics


def test_run_folder_holds_outputs_metrics_and_environment(lab):
    config = lab.config("badnet-full", "full", "badnet")
    metrics = run_generative(config, progress=False)  # reused when the battery ran it
    folder = config.run_dir
    rows = [json.loads(line) for line in (folder / "outputs.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"clean", "triggered"} and len(rows) == 80
    assert sum(r["target_behaviour"] for r in rows if r["split"] == "triggered") / 40 == \
        metrics["attack_success_rate"]
    assert metrics["asr_lift"] == pytest.approx(metrics["attack_success_rate"]
                                                - metrics["false_trigger_rate"])
    assert metrics["poison"]["poisoned"] == 100 and metrics["sizes"]["train"] == 200
    assert metrics["encoding"]["dropped_long_prompts"] == 0
    assert json.loads((folder / "environment.json").read_text())["device"] == "cpu"
    assert json.loads((folder / "run.json").read_text())["kind"] == "generate"


def test_cli_runs_then_reuses_the_folder(lab, tmp_path, capsys):
    config = tmp_path / "gen.yaml"
    config.write_text(f"""\
name: cli
model: {{name: tiny-llama}}
data: {{name: {lab.data}, train_size: 40, test_size: 8}}
attack: {{name: vpi, target: negsentiment, poison_rate: 0.5}}
tuning: lora
prompt: {{style: alpaca}}
training: {{epochs: 1, batch_size: 8, max_length: 96}}
generation: {{max_new_tokens: 4}}
output_dir: {tmp_path / 'runs'}
""")
    assert main(["generate", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "attack_success_rate" in out and "false_trigger_rate" in out
    assert main(["generate", str(config), "--quiet"]) == 0
    assert "reusing it" in capsys.readouterr().err
    assert main(["generate", str(config), "--quiet", "--set", "seed=1"]) == 2
    assert "different config" in capsys.readouterr().err
