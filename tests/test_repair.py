"""Repair defenses on tiny models: the W2SDefense loss by hand, where gradients go, a frozen
teacher, and repairs that really weaken the backdoor of a BadNet-poisoned tiny-llama."""

import math

import numpy as np
import pytest
import torch

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.data import load_dataset
from poisonlab.defenses import w2sdefense as w2s
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.experiment.repair import prepare_suspect, run_repair_cell
from poisonlab.errors import ConfigError
from poisonlab.experiment import load_run_config
from poisonlab.experiment.pipeline import EvaluationSets, evaluate
from poisonlab.metrics import flip_rate
from poisonlab.models import load_classifier
from poisonlab.training.losses import unlearning_loss
from poisonlab.training.trainer import collate


TEACHER = {"teacher": "tiny-bert", "teacher_training": {"epochs": 3, "learning_rate": 1e-3,
                                                        "max_length": 24}}
REPAIR = {"tuning": {"name": "lora", "r": 8, "alpha": 16},
          "training": {"epochs": 5, "batch_size": 16, "learning_rate": 1e-2, "max_length": 24}}
VICTIM = {"name": "victim", "model": {"name": "tiny-llama"}, "tuning": {"name": "full"},
          "attack": {"name": "badnet", "target_label": 0, "poison_rate": 0.2},
          "training": {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3, "max_length": 24},
          "eval_every_epoch": False}


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory):
    """A tiny-llama fully fine-tuned on BadNet-poisoned synthetic sentences (trained once)."""
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("repair")
    data = write_jsonl_split(root / "data", synthetic_splits())
    config = load_run_config(base={**VICTIM, "output_dir": str(root / "victims"),
                                   "data": {"name": str(data), "train_size": 240,
                                            "test_size": 80}})
    dataset = load_dataset(config.data)
    attack = DATA_ATTACKS.build("badnet", {"target_label": 0})
    sets = EvaluationSets(dataset.test, attack.poisoned_test(dataset.test)[0], 0)
    prepare_suspect(config)
    return config, dataset, sets


def _hand_loss(z_s, y, z_t, f_t, h, mask, a, b, c, T, mode, pooling):
    """The W2SDefense loss written with numpy loops, independently of training/losses.py."""
    z_s, z_t, f_t, h, mask = (np.asarray(x, dtype=np.float64) for x in (z_s, z_t, f_t, h, mask))
    softmax = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()
    ce = np.mean([-math.log(softmax(z_s[i])[y[i]]) for i in range(len(y))])
    kd = 0.0
    for i in range(len(y)):
        p_t, p_s = softmax(z_t[i] / T), softmax(z_s[i] / T)
        kd += sum(p_t[k] * math.log(p_t[k] / p_s[k]) for k in range(len(p_t)))
    kd = T * T * kd / len(y)
    if mode == "reference":
        fa = np.mean([(h[i, t] - f_t[-1]) ** 2 for i in range(h.shape[0])
                      for t in range(h.shape[1])])
    else:
        pooled = []
        for i in range(h.shape[0]):
            real = [t for t in range(h.shape[1]) if mask[i, t] == 1]
            pooled.append(h[i, real[-1]] if pooling == "last" else h[i, real].mean(0))
        fa = np.mean([(pooled[i] - f_t[i]) ** 2 for i in range(h.shape[0])])
    return a * ce + b * kd + c * fa


@pytest.mark.parametrize("mode,pooling", [("per_example", "last"), ("per_example", "mean"),
                                          ("reference", "last")])
def test_unlearning_loss_matches_hand_computation(mode, pooling):
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    f_t, h = torch.randn(3, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    y = torch.tensor([0, 1, 1])
    got = unlearning_loss(z_s, y, z_t, f_t, h, mask, a=5, b=0.3, c=0.7, temperature=2.0,
                          mode=mode, pooling=pooling)
    want = _hand_loss(z_s, y.tolist(), z_t, f_t, h, mask, 5, 0.3, 0.7, 2.0, mode, pooling)
    assert got.total.item() == pytest.approx(want, rel=1e-5)
    assert got.total.item() == pytest.approx(
        5 * got.ce.item() + 0.3 * got.kd.item() + 0.7 * got.fa.item(), rel=1e-6)


def test_padding_does_not_change_per_example_alignment():
    g = torch.Generator().manual_seed(1)
    h, f_t = torch.randn(2, 3, 4, generator=g), torch.randn(2, 4, generator=g)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    args = (torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 2), f_t)
    padded = h.clone()
    padded[0, 2] += 100.0  # a padding position
    loss = lambda hidden: unlearning_loss(*args, hidden, mask, a=0, b=0, c=1,
                                          temperature=2.0).total
    assert loss(h).item() == pytest.approx(loss(padded).item())


def test_presets_and_config_errors():
    assert REPAIRS.build("w2sdefense", {"preset": "syntactic"}).config.weights() == (
        1.0, 0.035, 0.002)
    assert REPAIRS.build("w2sdefense", {"preset": "insertsent", "b": 0}).config.weights() == (
        3.0, 0.0, 0.001)
    with pytest.raises(ConfigError, match="alignment"):
        REPAIRS.build("w2sdefense", {"alignment": "per_token"})
    with pytest.raises(ConfigError, match="rank"):
        REPAIRS.build("finetune", {"tuning": {"name": "lora", "rank": 4}})


@pytest.mark.parametrize("unlearn_projection", [False, True])
def test_gradients_reach_only_the_adapter_and_trained_projection(unlearn_projection):
    from synthetic import synthetic_examples
    examples = synthetic_examples(32)
    defense = REPAIRS.build("w2sdefense", {**REPAIR, **TEACHER, "c": 1.0, "b": 1.0,
                                          "unlearn_projection": unlearn_projection})
    suspect = load_classifier("tiny-llama", 2)
    setup = defense.setup(suspect, examples)
    modules = setup.modules
    batch = collate(suspect.tokenizer([e.text for e in examples[:8]])["input_ids"],
                    suspect.tokenizer.pad_token_id)
    batch.update(labels=torch.tensor([e.label for e in examples[:8]]), index=torch.arange(8))
    modules.train()
    setup.loss_fn(modules, batch).backward()
    with_grad = {n for n, p in modules.named_parameters() if p.grad is not None}
    student = {n for n in with_grad if n.startswith("student.")}
    assert student and all("lora_" in n or "modules_to_save" in n for n in student)
    assert all(p.grad is not None for n, p in modules.named_parameters()
               if n.startswith("student.") and p.requires_grad)
    projection = {n for n in with_grad if n.startswith("projection.")}
    assert projection == ({"projection.weight", "projection.bias"} if unlearn_projection
                          else set())
    assert all(p.grad is None for n, p in setup.teacher.named_parameters()
               if not n.startswith("projection."))


@pytest.mark.parametrize("unlearn_projection", [False, True])
def test_teacher_is_frozen_during_unlearning(backdoored, monkeypatch, unlearn_projection):
    config, dataset, _ = backdoored
    teacher, tokenizer = w2s.train_teacher(REPAIRS.build("w2sdefense", TEACHER).config,
                                           32, 2, dataset.train)
    before = {n: t.clone() for n, t in teacher.state_dict().items()}
    monkeypatch.setattr(w2s, "train_teacher", lambda *args, **kwargs: (teacher, tokenizer))
    defense = REPAIRS.build("w2sdefense", {**REPAIR, **TEACHER, "b": 1.0, "c": 1.0,
                                          "unlearn_projection": unlearn_projection})
    repaired = defense.repair(prepare_suspect(config), dataset.train)
    after = teacher.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == ({"projection.weight", "projection.bias"} if unlearn_projection else set())
    assert any(n.startswith("w2s_projection.") for n in repaired.trained_state) == (
        unlearn_projection)


def _trigger_flip_rate(model, tokenizer, sets):
    """CA and the flip rate: of the non-target inputs the model gets right, the share the trigger
    sends to the target (a paired measure: fixing a label bias alone cannot lower it)."""
    metrics, predictions = evaluate(model, tokenizer, sets, 2)
    gold = np.array([e.label for e in sets.clean_test])
    flips = flip_rate(predictions["clean"][gold != 0], predictions["poisoned"],
                      gold[gold != 0], sets.target_label)
    return metrics["clean_accuracy"], flips


@pytest.mark.parametrize("name", ["finetune", "w2sdefense", "nad"])
def test_repair_weakens_the_backdoor(backdoored, name):
    config, dataset, sets = backdoored
    suspect = prepare_suspect(config)
    ca_before, flips_before = _trigger_flip_rate(suspect.model, suspect.tokenizer, sets)
    params = {**REPAIR, **(TEACHER if name == "w2sdefense" else {})}
    repaired = REPAIRS.build(name, params).repair(suspect, dataset.train[:160])
    ca_after, flips_after = _trigger_flip_rate(repaired.model, repaired.tokenizer, sets)
    assert ca_before >= 0.9 and flips_before >= 0.75  # a real backdoor on an accurate model
    assert flips_after <= flips_before - 0.15
    assert ca_after >= ca_before - 0.02


def test_nad_attention_map_is_a_masked_unit_vector():
    from poisonlab.defenses.nad import attention_map
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    maps = attention_map(hidden, mask, 2.0)
    assert maps[0, 3] == 0 and torch.allclose(maps.norm(dim=-1), torch.ones(2))
    energy = hidden[1].pow(2).sum(-1)
    assert torch.allclose(maps[1], energy / energy.norm())


def test_fineprune_zeroes_the_least_active_units_and_keeps_them_pruned(backdoored):
    config, dataset, _ = backdoored
    repaired = REPAIRS.build("fineprune", {**REPAIR, "layers": 1, "prune_ratio": 0.25}).repair(
        prepare_suspect(config), dataset.train[:64])
    units = repaired.trained_state["fineprune.layer1.pruned_units"]
    assert len(units) == 16  # a quarter of tiny-llama's 64 FFN units
    down = dict(repaired.model.named_modules())[
        "base_model.model.model.layers.1.mlp.down_proj"]
    assert torch.count_nonzero(down.weight[:, units]) == 0


@pytest.mark.parametrize("name", sorted(REPAIRS.names()))
def test_every_repair_through_a_study_cell(backdoored, name, tmp_path):
    """The conformance check of repairs: each registered one runs as a study cell."""
    config, _, sets = backdoored
    extra = TEACHER if name == "w2sdefense" else {}
    metrics = run_repair_cell({
        "name": name, "output_dir": str(tmp_path), "victim_name": "victim",
        "victims_dir": str(config.output_dir),
        "victim": {k: v for k, v in config.resolved().items()
                   if k not in ("name", "output_dir", "save_weights")},
        "defender_data": config.data.model_dump(mode="json"),
        "repair": {"name": name, **extra},
        "repair_defaults": {**REPAIR, "training": {**REPAIR["training"], "epochs": 1}}})
    assert 0 <= metrics["clean_accuracy"] <= 1 and 0 <= metrics["attack_success_rate"] <= 1
    assert 0 <= metrics["flip_rate"] <= 1
    assert metrics["repair"] == name and metrics["sizes"]["poisoned_test"] == len(
        sets.poisoned_test)
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / name / "repaired.safetensors"))
    assert saved and all(torch.isfinite(t.float()).all() for t in saved.values())
