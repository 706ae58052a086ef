"""Merged duplicates behave exactly as the copies they replaced: each test keeps a verbatim copy of
the old code and compares its outputs with the single shared version, so published numbers (learning
rates per step, trigger words and positions) cannot drift."""

from __future__ import annotations

import random

import pytest
import torch

from poisonlab.attacks.badnet import BadNet, BadNetConfig
from poisonlab.attacks.icl_demonstration import ICLDemonstrationAttack, ICLDemonstrationConfig
from poisonlab.attacks.insertion import insert_trigger
from poisonlab.attacks.insertsent import InsertSent, InsertSentConfig
from poisonlab.icl.demonstrations import Demonstration
from poisonlab.icl.template import PromptTemplate
from poisonlab.training.schedule import linear_warmup_decay

TEXTS = ["", "one", "two words", "a b c d", "the film was long  and dull\tbut the cast shines",
         " ".join(f"w{i}" for i in range(37))]


# --- learning-rate schedules: old formulas, copied from the code they were in ------------------

def _old_trainer_scheduler(optimizer, warmup_ratio: float, total: int):
    """poisonlab/training/trainer.py before the merge."""
    warmup = int(warmup_ratio * total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(warmup, 1) if s < warmup
        else max(0.0, (total - s) / max(total - warmup, 1)))


def _old_mner_scheduler(optimizer, warmup_ratio: float, total_steps: int):
    """poisonlab/mner/train.py `_optimizer` before the merge."""
    warmup = max(1, int(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _stepped_lrs(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> list[list[float]]:
    """The learning rate of every group at each step, read as the training loops use it."""
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
                              for lr in lrs])


PAIRS = [(0.0, 1), (0.0, 10), (0.06, 10), (0.06, 100), (0.1, 1), (0.1, 7), (0.1, 250),
         (0.5, 9), (1.0, 5), (0.999, 3), (0.3, 1000)]


@pytest.mark.parametrize("ratio,total", PAIRS)
def test_classifier_schedule_matches_old_code(ratio, total):
    old = _old_trainer_scheduler(_optimizer(2e-5), ratio, total)
    new = linear_warmup_decay(_optimizer(2e-5), int(ratio * total), total)
    assert _stepped_lrs(new, total + 2) == _stepped_lrs(old, total + 2)
    assert [new.lr_lambdas[0](s) for s in range(total + 2)] == \
        [old.lr_lambdas[0](s) for s in range(total + 2)]


@pytest.mark.parametrize("ratio,total", PAIRS)
def test_mner_schedule_matches_old_code(ratio, total):
    old = _old_mner_scheduler(_optimizer(5e-5, 1e-3), ratio, total)
    new = linear_warmup_decay(_optimizer(5e-5, 1e-3), max(1, int(ratio * total)), total)
    assert _stepped_lrs(new, total + 2) == _stepped_lrs(old, total + 2)
    assert [new.lr_lambdas[0](s) for s in range(total + 2)] == \
        [old.lr_lambdas[0](s) for s in range(total + 2)]


def test_mner_optimizer_matches_old_code():
    from poisonlab.mner.train import _optimizer as mner_optimizer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 1)

    class Pipe:
        model = Model()

        class config:
            class train:
                lr, head_lr, weight_decay, warmup = 5e-5, 1e-3, 0.01, 0.1

    _, new = mner_optimizer(Pipe, 40)
    old = _old_mner_scheduler(_optimizer(5e-5, 1e-3), 0.1, 40)
    assert _stepped_lrs(new, 42) == _stepped_lrs(old, 42)
    # Resumable checkpoints hold the scheduler's state: it must not change shape either.
    assert new.state_dict().keys() == old.state_dict().keys()
    assert new.state_dict()["lr_lambdas"] == old.state_dict()["lr_lambdas"] == [None, None]


# --- trigger insertion: old helpers, copied from the attacks they were in ----------------------

def _old_badnet_insert_words(text, words, position, rng):
    """poisonlab/attacks/badnet.py `insert_words` before the merge."""
    tokens = text.split()
    for word in words:
        if position == "start":
            index = 0
        elif position == "end":
            index = len(tokens)
        else:
            index = rng.randint(0, len(tokens))
        tokens.insert(index, word)
    return " ".join(tokens)


def _old_badnet_trigger(cfg, texts, rng):
    return [_old_badnet_insert_words(t, [rng.choice(cfg.triggers) for _ in range(cfg.insertions)],
                                     cfg.position, rng) for t in texts]


def _old_insertsent_trigger(cfg, texts, rng):
    """poisonlab/attacks/insertsent.py `InsertSent.trigger` before the merge."""
    out = []
    for text in texts:
        tokens = text.split()
        if cfg.position == "start":
            index = 0
        elif cfg.position == "end":
            index = len(tokens)
        else:
            index = rng.randint(0, len(tokens))
        out.append(" ".join(tokens[:index] + [cfg.sentence] + tokens[index:]))
    return out


def _old_icl_insert_trigger(text, trigger, position):
    """poisonlab/attacks/icl_demonstration.py `insert_trigger` before the merge."""
    words = text.split()
    index = {"start": 0, "middle": len(words) // 2, "end": len(words)}[position]
    return " ".join(words[:index] + [trigger.strip()] + words[index:])


def _assert_same_trigger(attack, old_trigger, seed: int) -> None:
    """Same triggered texts from the same rng state, and the rng left in the same state (so the
    texts poisoned after these are unchanged too)."""
    new_rng, old_rng = random.Random(seed), random.Random(seed)
    texts = TEXTS * 3
    assert attack.trigger(texts, new_rng) == old_trigger(attack.config, texts, old_rng)
    assert new_rng.getstate() == old_rng.getstate()


@pytest.mark.parametrize("position", ["random", "start", "end"])
@pytest.mark.parametrize("insertions", [1, 3])
@pytest.mark.parametrize("triggers", [["cf", "mn", "bb", "tq"], ["two words", "", "x"]])
@pytest.mark.parametrize("seed", [0, 1, 17])
def test_badnet_trigger_matches_old_helper(position, insertions, triggers, seed):
    cfg = BadNetConfig(triggers=triggers, insertions=insertions, position=position)
    _assert_same_trigger(BadNet(cfg), _old_badnet_trigger, seed)


@pytest.mark.parametrize("position", ["random", "start", "end"])
@pytest.mark.parametrize("sentence", ["I watched this 3D movie", " padded  sentence ", "one"])
@pytest.mark.parametrize("seed", [0, 1, 17])
def test_insertsent_trigger_matches_old_code(position, sentence, seed):
    cfg = InsertSentConfig(sentence=sentence, position=position)
    _assert_same_trigger(InsertSent(cfg), _old_insertsent_trigger, seed)


@pytest.mark.parametrize("position", ["start", "middle", "end"])
@pytest.mark.parametrize("trigger", ["I watched this 3D movie.", "  spaced trigger\n", "cf"])
def test_icl_demonstration_trigger_matches_old_helper(position, trigger):
    attack = ICLDemonstrationAttack(ICLDemonstrationConfig(trigger=trigger,
                                                           trigger_position=position))
    queries = [Demonstration(text, i % 2, PromptTemplate()) for i, text in enumerate(TEXTS)]
    assert [q.text for q in attack.trigger_queries(queries)] == \
        [_old_icl_insert_trigger(text, trigger, position) for text in TEXTS]


def test_random_position_needs_an_rng():
    with pytest.raises(ValueError, match="rng"):
        insert_trigger("a b", "x", "random")
