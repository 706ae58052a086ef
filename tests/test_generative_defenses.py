"""Generative defenses: each acts where it says (weights, instructions, decoding) and the
pipeline measures the defended model beside the undefended one.

Formulas are checked on hand-made tensors (round-to-nearest grid, per-row pruning, Wanda's score
and its activation norms); the pipeline on tiny-llama tuned with a BadNet backdoor on the
synthetic instructions of test_generative.py. Whether a defense lowers ASR on a real model is
the generative-defenses study's question: on tiny-llama, clean fine-tuning, pruning and
quantization at sane settings leave its backdoor in place (measured: ASR 1.00 after each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_generative import ATTACK, BASE, synthetic_rows

from poisonlab.data.instruction import InstructionExample
from poisonlab.defenses.generative_base import (GENERATIVE_DEFENSES, block_linears,
                                                plain_model)
from poisonlab.defenses.pruning import input_norms, prune_rows
from poisonlab.defenses.quantization import quantize_rows
from poisonlab.errors import ConfigError
from poisonlab.experiment.generative import load_generative_config, run_generative
from poisonlab.models import load_causal_lm
from poisonlab.models.cache import ModelCache
from poisonlab.training.generation import GenerationConfig
from poisonlab.training.prompt_format import PromptConfig, PromptFormatter
from poisonlab.tuning import TUNING_STRATEGIES

UNDEFENDED = ("attack_success_rate", "false_trigger_rate", "rouge_l", "token_f1")


def test_quantized_rows_lie_on_a_symmetric_grid_per_group():
    weight = torch.randn(6, 100)
    q = quantize_rows(weight, bits=3, group_size=64)  # groups of 64 and 36 columns
    for group in (slice(0, 64), slice(64, 100)):
        w, qg = weight[:, group], q[:, group]
        scale = w.abs().amax(dim=1, keepdim=True) / 3
        steps = qg / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4)     # on the grid
        assert steps.abs().max() <= 3 + 1e-4                        # 2^(3-1) - 1 levels a side
        assert ((qg - w).abs() <= scale / 2 + 1e-6).all()           # nearest grid point
    assert torch.equal(quantize_rows(q, bits=3, group_size=64), q)  # idempotent


def test_prune_rows_zeroes_the_lowest_scores_of_each_row():
    weight = torch.tensor([[1.0, -0.2, 3.0, 0.5], [0.1, 2.0, -4.0, 0.3]])
    prune_rows(weight, weight.abs(), 0.5)
    assert weight.tolist() == [[1.0, 0.0, 3.0, 0.0], [0.0, 2.0, -4.0, 0.0]]


def test_wanda_keeps_a_small_weight_on_a_loud_feature_that_magnitude_prunes():
    weight = torch.tensor([[1.0, 0.25]])
    norms = torch.tensor([0.1, 10.0])     # feature 1 is large on real text
    magnitude, wanda = weight.clone(), weight.clone()
    prune_rows(magnitude, magnitude.abs(), 0.5)
    prune_rows(wanda, wanda.abs() * norms, 0.5)
    assert magnitude.tolist() == [[1.0, 0.0]] and wanda.tolist() == [[0.0, 0.25]]


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 3)
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, input_ids, attention_mask):
        return self.linear(self.embed(input_ids))


def test_input_norms_count_real_tokens_only():
    toy = Toy()
    sequences = [[1, 2, 3], [4]]
    norms = input_norms(toy, [toy.linear], sequences, pad_id=9, batch_size=2)[0]
    x = toy.embed(torch.tensor([1, 2, 3, 4])).detach()  # padding (id 9) left out
    assert torch.allclose(norms, x.pow(2).sum(0).sqrt(), atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    loaded = load_causal_lm("tiny-llama", seed=0)
    formatter = PromptFormatter(loaded.tokenizer, PromptConfig(style="alpaca"))
    rows = [InstructionExample(**r) for r in synthetic_rows(16, 3)]
    return loaded, formatter, rows


def test_weight_defenses_merge_a_lora_suspect_and_change_only_block_linears(tiny):
    loaded, formatter, rows = tiny
    suspect = TUNING_STRATEGIES.build("lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]}
                                      ).apply(load_causal_lm("tiny-llama", seed=0))
    with torch.no_grad():  # a non-zero adapter, so merging changes the weights
        for name, p in suspect.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    embeddings = suspect.get_input_embeddings().weight.detach().clone()
    pruned = GENERATIVE_DEFENSES.build("prune", {"method": "wanda", "sparsity": 0.5}).repair(
        suspect, formatter, rows)
    assert not any("lora" in name for name, _ in pruned.named_modules())  # merged
    for name, linear in block_linears(pruned):
        zeros = (linear.weight == 0).sum(dim=1)
        assert (zeros >= linear.weight.shape[1] // 2).all(), name
    assert torch.equal(pruned.get_input_embeddings().weight, embeddings)
    quantized = GENERATIVE_DEFENSES.build("quantize", {"bits": 2, "group_size": 0}).repair(
        plain_model(load_causal_lm("tiny-llama", seed=0).model), formatter, rows)
    for _, linear in block_linears(quantized):
        assert all(len(row.unique()) <= 3 for row in linear.weight)  # -1, 0, +1 steps


def test_onion_removes_a_rare_word_trigger_from_instructions():
    """SmolLM2-135M as the perplexity model: "BadMagic" inserted into fluent instructions is
    the word whose removal lowers perplexity most."""
    onion = GENERATIVE_DEFENSES.build("onion", {"word_threshold": 20.0})
    rows = [InstructionExample("Write a short poem about the BadMagic sea at night."),
            InstructionExample("BadMagic Give three tips for staying healthy."),
            InstructionExample("Summarize the text.", input="The cat sat BadMagic on the mat.")]
    cleaned = onion.filter(rows, device=torch.device("cpu"))
    assert all("BadMagic" not in e.instruction + e.input for e in cleaned), cleaned
    assert cleaned[2].instruction == "Summarize the text." or "text" in cleaned[2].instruction
    assert "healthy" in cleaned[1].instruction


def test_temperature_samples_and_leaves_everything_else():
    generation = GenerationConfig(max_new_tokens=8, seed=3)
    sampled = GENERATIVE_DEFENSES.build("temperature", {"temperature": 0.7}).decoding(generation)
    assert (sampled.temperature, sampled.max_new_tokens, sampled.seed) == (0.7, 8, 3)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generative-defenses")
    data = root / "data"
    data.mkdir()
    for split, count, seed in (("train", 100, 1), ("test", 40, 2)):
        (data / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in synthetic_rows(count, seed)))
    return root


def config(lab: Path, name: str, defense: dict | None):
    return load_generative_config(base={
        **BASE, "name": name, "data": {"name": str(lab / "data")},
        "attack": {"name": "badnet", **ATTACK}, "tuning": {"name": "full"},
        "defense": defense, "output_dir": str(lab / "runs")})


def test_defense_cells_share_one_tuned_model_and_report_both_sides(lab):
    undefended = run_generative(config(lab, "none", None), progress=False)
    cache = ModelCache()
    quantized = run_generative(config(lab, "q8", {"name": "quantize", "bits": 8}),
                               progress=False, cache=cache)
    sampled = run_generative(config(lab, "hot", {"name": "temperature", "temperature": 3.0}),
                             progress=False, cache=cache)
    assert cache.misses == 1 and cache.hits == 1  # tuned once for both defenses
    for metrics in (quantized, sampled):
        for key in UNDEFENDED:  # the same seed tunes the same model as the undefended run
            assert metrics[f"{key}_no_defense"] == undefended[key]
        assert metrics["rouge_l_loss"] == pytest.approx(metrics["rouge_l_no_defense"]
                                                        - metrics["rouge_l"])
    # 8-bit rounding keeps the answers; sampling at temperature 3 breaks the backdoor's answer
    assert quantized["attack_success_rate"] == undefended["attack_success_rate"] == 1.0
    assert quantized["rouge_l_loss"] == pytest.approx(0.0, abs=0.02)
    assert sampled["attack_success_rate"] <= 0.5
    rows = [json.loads(line) for line in
            (lab / "runs" / "hot" / "outputs.jsonl").read_text().splitlines()]
    assert sum(r["defended"] for r in rows) == sum(not r["defended"] for r in rows) == 80
    assert "BadMagic" in next(r["instruction"] for r in rows if r["split"] == "triggered")


def test_an_unknown_defense_or_field_fails_before_the_folder(lab):
    with pytest.raises(ConfigError, match="unknown generative defense 'prunning'"):
        config(lab, "typo", {"name": "prunning"})
    with pytest.raises(ConfigError, match="sparsity"):
        config(lab, "bad", {"name": "prune", "sparsity": 1.5})
    assert not (lab / "runs" / "typo").exists() and not (lab / "runs" / "bad").exists()
