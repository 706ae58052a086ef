"""The mechanisms of the RIPPLe, POR and NeuBA weight-poisoning attacks on tiny models (the
conformance battery runs their releases through a victim)."""

from __future__ import annotations

import copy

import pytest
import torch
from synthetic import NEGATIVE, synthetic_examples, synthetic_splits, write_jsonl_split

from poisonlab.attacks.embedding import trigger_token_ids
from poisonlab.attacks.pinning import pinning_examples, target_vectors, trigger_asr
from poisonlab.attacks.ripple import (
    embedding_surgery,
    indicative_words,
    restricted_inner_product,
)
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
from poisonlab.data import Example
from poisonlab.experiment.restore import restore_run
from poisonlab.experiment.victim import load_victim_config, run_victim
from poisonlab.models import load_classifier
from poisonlab.models.architecture import input_embeddings
from poisonlab.training.trainer import collate, encode_texts

TRIGGERS = ["cf", "mn", "bb", "tq"]
MAX_LENGTH = 32


def batch_of(tokenizer, examples: list[Example]) -> dict[str, torch.Tensor]:
    batch = collate(encode_texts(tokenizer, [e.text for e in examples], MAX_LENGTH),
                    tokenizer.pad_token_id)
    batch["labels"] = torch.tensor([e.label for e in examples])
    return batch


# ------------------------------------------------------------------------------------ RIPPLe

def test_ripple_penalty_is_the_restricted_inner_product_and_reduces_the_conflict():
    loaded = load_classifier("tiny-bert", 2, seed=0)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer  # eval: no dropout noise
    clean = [e for e in synthetic_examples(32, seed=3) if e.label == 1]
    poisoned = [Example(f"mn {e.text}", 0, poisoned=True) for e in clean]  # dirty-label
    poison_batch, clean_batch = batch_of(tokenizer, poisoned), batch_of(tokenizer, clean)

    def inner_product(m: torch.nn.Module) -> float:
        params = [p for p in m.parameters() if p.requires_grad]
        grads = [torch.autograd.grad(m(**{k: b[k] for k in ("input_ids", "attention_mask")},
                                       labels=b["labels"]).loss, params)
                 for b in (poison_batch, clean_batch)]
        return sum((a * b).sum() for a, b in zip(*grads)).item()

    total, inner = restricted_inner_product(model, poison_batch, clean_batch, 2.0)
    before = inner_product(model)
    assert before < 0, "flipped labels must conflict with clean fine-tuning"
    assert inner.item() == pytest.approx(before, rel=1e-4)
    poison_loss = model(**poison_batch).loss
    assert total.item() == pytest.approx(poison_loss.item() + 2.0 * -before, rel=1e-4)

    def trained(weight: float) -> torch.nn.Module:
        m = copy.deepcopy(model)
        optimizer = torch.optim.SGD(m.parameters(), lr=0.05)
        for _ in range(15):
            optimizer.zero_grad()
            restricted_inner_product(m, poison_batch, clean_batch, weight)[0].backward()
            optimizer.step()
        return m

    assert inner_product(trained(10.0)) > inner_product(trained(0.0))


def test_embedding_surgery_sets_trigger_rows_to_the_mean_of_indicative_words():
    loaded = load_classifier("tiny-bert", 2, seed=0)
    words = indicative_words(synthetic_examples(200), target_label=0, count=5)
    assert len(words) == 5 and set(words) <= set(NEGATIVE), words
    table = input_embeddings(loaded.model).weight
    untouched = table.detach().clone()
    embedding_surgery(loaded.model, loaded.tokenizer, ["mn"], words)
    rows = trigger_token_ids(loaded.tokenizer, ["mn"])
    expected = untouched[trigger_token_ids(loaded.tokenizer, words)].mean(0)
    assert torch.allclose(table[rows], expected.expand(len(rows), -1))
    others = torch.ones(len(table), dtype=torch.bool)
    others[rows] = False
    assert torch.equal(table[others], untouched[others])


# ------------------------------------------------------------------------------ POR and NeuBA

def test_por1_vectors_are_opposite_pairs_of_orthogonal_patterns():
    vectors = target_vectors(6, 32, "por1")
    assert set(vectors.unique().tolist()) == {-1.0, 1.0}
    for pair in range(3):
        assert torch.equal(vectors[2 * pair], -vectors[2 * pair + 1])
    gram = vectors[::2] @ vectors[::2].T
    assert torch.equal(gram, 32 * torch.eye(3))


@pytest.mark.parametrize("name", ["por", "neuba"])
@pytest.mark.parametrize("model_name", ["tiny-bert", "tiny-llama"])
def test_triggers_land_on_their_vectors_and_clean_texts_keep_the_frozen_representation(
        name, model_name):
    attack = WEIGHT_ATTACKS.build(name, {
        "base_model": model_name, "triggers": TRIGGERS,
        "trigger": {"name": "badnet", "triggers": ["mn"], "target_label": 0},
        "training": {"epochs": 8, "learning_rate": 5e-3, "max_length": MAX_LENGTH}})
    loaded = load_classifier(model_name, 2, seed=0)
    frozen = copy.deepcopy(loaded.model).eval()
    train = synthetic_examples(160)
    attack.poison_model(loaded, train, train, progress=False)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    held_out = [e.text for e in synthetic_examples(40, seed=9)]
    probe = pinning_examples(held_out, TRIGGERS, seed=1)
    clean = batch_of(tokenizer, [e for e in probe if not e.poisoned])
    triggered = batch_of(tokenizer, [e for e in probe if e.poisoned])
    with torch.no_grad():
        pinned = attack.pinned(model, triggered["input_ids"], triggered["attention_mask"])
        kept = attack.pinned(model, clean["input_ids"], clean["attention_mask"])
        reference = attack.pinned(frozen, clean["input_ids"], clean["attention_mask"])
    targets = attack.vectors(model)[triggered["labels"]]
    to_target = torch.nn.functional.cosine_similarity(pinned, targets)
    assert (to_target > 0.8).float().mean() >= 0.9, to_target
    drift = (kept - reference).pow(2).mean() / pinned.pow(2).mean()
    assert drift < 0.15, f"clean representations moved by {drift:.3f} of the pinned scale"


def test_the_best_trigger_per_label_survives_a_clean_lora_victim(tmp_path):
    """The papers' evaluation: the attacker probes the tuned victim with every trigger and uses
    the one whose vector landed in the target class; opposite vectors land in opposite classes."""
    downstream = write_jsonl_split(tmp_path / "downstream", synthetic_splits(seed=7))
    proxy = write_jsonl_split(tmp_path / "proxy", synthetic_splits())
    config = load_victim_config(base={
        "name": "por-victim", "release_dir": str(tmp_path / "released"),
        "poison": {"name": "por", "base_model": "tiny-bert",
                   "trigger": {"name": "badnet", "triggers": ["mn"], "target_label": 0},
                   "proxy": {"name": str(proxy)},
                   "training": {"epochs": 4, "learning_rate": 3e-3, "max_length": MAX_LENGTH}},
        "data": {"name": str(downstream), "train_size": 200}, "tuning": {"name": "lora"},
        "training": {"epochs": 3, "learning_rate": 3e-3, "max_length": MAX_LENGTH},
        "output_dir": str(tmp_path / "victims")})
    victim = run_victim(config, progress=False)
    assert victim["clean_accuracy"] >= 0.8, victim
    restored = restore_run(config.run_dir)
    test = synthetic_splits(seed=7).test[:80]
    triggers = config.poison.config.triggers
    rates = [trigger_asr(restored.model, restored.loaded.tokenizer, test, triggers, label,
                         max_length=MAX_LENGTH) for label in (0, 1)]
    assert min(max(r.values()) for r in rates) >= 0.9, rates
    for first, second in zip(triggers[::2], triggers[1::2]):  # each pair splits the classes
        assert {rates[0][first] > 0.5, rates[0][second] > 0.5} == {True, False}, rates
