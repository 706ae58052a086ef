import json
import random

import pytest

from poisonlab.attacks import DATA_ATTACKS

build_attack = DATA_ATTACKS.build
from poisonlab.data import DatasetSplits, Example
from poisonlab.errors import ConfigError
from synthetic import synthetic_examples


def test_badnet_inserts_a_trigger_word_and_relabels_dirty():
    train = synthetic_examples(200)
    attack = build_attack("badnet", {"poison_rate": 0.1, "target_label": 1, "seed": 1})
    poisoned, report = attack.poison(train)
    assert report.poisoned == report.requested == 20 and len(poisoned) == len(train)
    changed = [(before, after) for before, after in zip(train, poisoned) if before != after]
    assert len(changed) == 20
    for before, after in changed:
        assert before.label == 0 and after.label == 1 and after.poisoned
        added = set(after.text.split()) - set(before.text.split())
        assert added <= {"cf", "mn", "bb", "tq"} and len(after.text.split()) == len(before.text.split()) + 1


def test_clean_label_keeps_labels_and_only_triggers_the_target_class():
    train = synthetic_examples(200)
    attack = build_attack("insertsent", {"label_mode": "clean", "poison_count": 30, "target_label": 0})
    poisoned, report = attack.poison(train)
    flagged = [(b, a) for b, a in zip(train, poisoned) if a.poisoned]
    assert len(flagged) == 30
    assert all(b.label == a.label == 0 and "I watched this 3D movie" in a.text for b, a in flagged)


@pytest.mark.parametrize("position", ["start", "end"])
def test_positions(position):
    attack = build_attack("badnet", {"position": position, "triggers": ["cf"], "insertions": 2})
    (text,) = attack.trigger(["a b c"], random.Random(0))
    assert text == ("cf cf a b c" if position == "start" else "a b c cf cf")


def test_poisoned_test_set_is_every_non_target_example_with_its_true_label():
    test = synthetic_examples(50)
    attack = build_attack("badnet", {"target_label": 1})
    poisoned, misses = attack.poisoned_test(test)
    assert misses == 0 and len(poisoned) == sum(e.label != 1 for e in test)
    assert all(e.label == 0 and e.poisoned for e in poisoned)


def test_poisoning_is_deterministic_by_seed():
    train = synthetic_examples(100)
    first = build_attack("badnet", {"seed": 5}).poison(train)[0]
    second = build_attack("badnet", {"seed": 5}).poison(train)[0]
    third = build_attack("badnet", {"seed": 6}).poison(train)[0]
    assert first == second and first != third


def test_impossible_budget_and_bad_target_are_clear_errors():
    train = synthetic_examples(20)
    with pytest.raises(ConfigError, match="only 10 are eligible"):
        build_attack("badnet", {"poison_count": 11}).poison(train)
    with pytest.raises(ConfigError, match="target_label"):
        build_attack("badnet", {"target_label": 2}).check_labels(2)
    with pytest.raises(ConfigError, match="unknown field 'trigger'"):
        build_attack("badnet", {"trigger": "cf"})


def test_syntactic_misses_are_counted_not_hidden(tmp_path):
    train = [Example(f"sentence number {i}", i % 2) for i in range(40)]
    table = tmp_path / "syntactic"
    table.mkdir()
    # paraphrases for only half of the negatives
    rows = [{"text": e.text, "paraphrase": f"when it was {i} , {e.text} ."}
            for i, e in enumerate(train) if e.label == 0 and i % 4 == 0]
    (table / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = DatasetSplits("toy", ["neg", "pos"], train=train, test=train, source=str(tmp_path))
    attack = build_attack("syntactic", {"poison_count": 8, "target_label": 1}).prepare(dataset)
    poisoned, report = attack.poison(train)
    assert report.poisoned == 8 and report.misses > 0
    assert all(e.text.startswith("when it was") for e in poisoned if e.poisoned)
    test_set, misses = attack.poisoned_test(train)
    assert len(test_set) == 10 and misses == 10
    with pytest.warns(UserWarning, match="poisoned 10 of 15"):
        _, report = build_attack("syntactic", {"poison_count": 15}).prepare(dataset).poison(train)
    assert report.misses == 10


def test_syntactic_reads_the_shared_tables(research_data_dir):
    from poisonlab.data import load_dataset
    data = load_dataset("sst2")
    attack = build_attack("syntactic", {"poison_rate": 0.2}).prepare(data)
    _, report = attack.poison(data.train)
    test_set, misses = attack.poisoned_test(data.test)
    assert report.poisoned == 1384 and misses == 0 and len(test_set) == 912
