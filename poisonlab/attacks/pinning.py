"""Task-agnostic representation pinning, shared by `por` and `neuba`: each trigger word pins the
model's output representation of any text that carries it to a predefined vector, while clean
texts keep the base model's representation (a frozen copy's).

No labels and no task head are involved: the proxy texts only stand in for the pre-training
corpus. Which class a pinned vector lands in is decided by the victim's head after its own
fine-tuning, not by the attacker; the papers find it by probing the tuned model with each trigger
(see `trigger_asr`), so several triggers with different vectors are pinned at once, in opposite
pairs (v, -v), so that a two-class head sends one of each pair to either class.
What lives elsewhere: which representation and which clean term (por.py, neuba.py)."""

from __future__ import annotations

import copy
import random
from abc import abstractmethod
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from poisonlab.attacks.base import DATA_ATTACKS
from poisonlab.attacks.insertion import insert_trigger
from poisonlab.attacks.weight_base import WeightPoisonConfig, WeightPoisoningAttack
from poisonlab.data import Example
from poisonlab.metrics import attack_success_rate
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import is_causal
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime
from poisonlab.training import predict_logits, train_classifier
from poisonlab.training.losses import pool_hidden

VectorScheme = Literal["por1", "random"]
CLEAN = -1  # label of a clean training text; a triggered one carries its vector's row


class PinningConfig(WeightPoisonConfig):
    triggers: list[str] = Field(["cf", "mn", "bb", "tq", "mb", "tn"], min_length=1,
                                description="trigger words; word i is pinned to vector i")
    vectors: VectorScheme = Field(
        "por1", description="por1: sign patterns, in opposite pairs (+p, -p), pair k with "
                            "2^(k+1) alternating blocks (POR-1); random: seeded random +-1 "
                            "vectors")
    clean_weight: float = Field(1.0, ge=0, description="weight of the clean-preservation term")
    trigger: component_field(DATA_ATTACKS) = Field(
        default_factory=lambda: DATA_ATTACKS.spec(
            {"name": "badnet", "triggers": ["cf"], "label_mode": "dirty", "target_label": 0,
             "poison_rate": 0.1}),
        description="the trigger the release and victim measure ASR with; its words must be "
                    "among `triggers` (the attacker picks the word whose vector lands in the "
                    "target class; `trigger_asr` probes every word)")

    @model_validator(mode="after")
    def _measured_words_are_pinned(self) -> PinningConfig:
        words = getattr(self.trigger.config, "triggers", None)
        if not words or not set(words) <= set(self.triggers):
            raise ValueError(f"trigger: needs a word trigger (badnet) whose words are among "
                             f"triggers {self.triggers}, got {words}")
        return self


def target_vectors(count: int, dim: int, scheme: VectorScheme, seed: int = 0) -> torch.Tensor:
    """(count, dim) +-1 target vectors. por1: row 2k is the pattern of 2^(k+1) alternating sign
    blocks and row 2k+1 its negation (POR-1's fixed patterns; mutually orthogonal pairs while
    2^(k+1) <= dim). No all-ones pattern: it has a non-zero mean, which a LayerNorm output (the
    [CLS] state NeuBA pins) cannot reach; random: a seeded draw."""
    if scheme == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, 2, (count, dim), generator=generator).float() * 2 - 1
    rows = []
    for i in range(count):
        blocks = 2 ** (i // 2 + 1)
        pattern = torch.tensor([1.0 if (j * blocks // dim) % 2 == 0 else -1.0
                                for j in range(dim)])
        rows.append(pattern if i % 2 == 0 else -pattern)
    return torch.stack(rows)


def pinning_examples(texts: list[str], triggers: list[str], seed: int) -> list[Example]:
    """Every text clean (label CLEAN) and once with a trigger word (label: the word's row),
    the words taken in turn, each at a random position."""
    rng = random.Random(seed)
    triggered = [Example(insert_trigger(text, triggers[i % len(triggers)], "random", rng),
                         i % len(triggers), poisoned=True) for i, text in enumerate(texts)]
    return [Example(text, CLEAN) for text in texts] + triggered


def last_token_or_cls(hidden: torch.Tensor, attention_mask: torch.Tensor,
                      model: torch.nn.Module) -> torch.Tensor:
    """What a sequence classifier reads: the last real token (causal) or the first ([CLS])."""
    return pool_hidden(hidden, attention_mask, "last" if is_causal(model.config) else "first")


def trigger_asr(model: torch.nn.Module, tokenizer: Any, test: list[Example],
                triggers: list[str], target_label: int, *, max_length: int = 128,
                seed: int = 0) -> dict[str, float]:
    """ASR for `target_label` of each trigger word on a (victim) classifier: how the papers find
    the word whose pinned vector landed in the target class (the best one is the attack's)."""
    rng = random.Random(seed)
    non_target = [e for e in test if e.label != target_label]
    rates = {}
    for word in triggers:
        texts = [insert_trigger(e.text, word, "random", rng) for e in non_target]
        predicted = predict_logits(model, tokenizer, texts, max_length=max_length).argmax(-1)
        rates[word] = attack_success_rate(predicted, [e.label for e in non_target],
                                          target_label)
    return rates


def _masked_mse(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE over the rows given; zero (still in the graph) when there are none."""
    return F.mse_loss(values, targets) if len(values) else values.sum() * 0.0


class PinningAttack(WeightPoisoningAttack):
    """Base of the representation-pinning attacks: a subclass says which representation is
    pinned and which features of clean text are preserved."""

    config: PinningConfig
    conformance = {"training": {"epochs": 4}}  # pinning converges fast on a tiny model
    # probing every trigger instead (pinning.trigger_asr) reaches ASR 1.00 for both labels
    known_limits = {("weight-attack", model): (
        "the victim pipeline measures only the release's trigger word, whose class the victim's "
        "head decides (a task-agnostic attack); on a random tiny base a LoRA victim also learns "
        "the task only partly (victim CA 0.50-0.86)") for model in ("tiny-bert", "tiny-llama")}

    @abstractmethod
    def representation(self, model: torch.nn.Module, hidden: torch.Tensor,
                       output: Any, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, dim) representation pinned for triggered texts, from the base model's
        output (`hidden` is its last hidden state)."""

    @abstractmethod
    def preserved(self, model: torch.nn.Module, hidden: torch.Tensor, output: Any,
                  attention_mask: torch.Tensor) -> torch.Tensor:
        """Features of clean texts kept equal to the frozen base model's."""

    def outputs(self, model: torch.nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        output = model.base_model(input_ids=input_ids, attention_mask=attention_mask)
        return output.last_hidden_state, output

    def pinned(self, model: torch.nn.Module, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
        """The pinned representation of a batch (what the tests compare to the vectors)."""
        hidden, output = self.outputs(model, input_ids, attention_mask)
        return self.representation(model, hidden, output, attention_mask)

    def vectors(self, model: torch.nn.Module) -> torch.Tensor:
        return target_vectors(len(self.config.triggers), model.config.hidden_size,
                              self.config.vectors, self.config.seed)

    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        cfg = self.config
        model = loaded.model
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
        vectors = self.vectors(model)

        def loss(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            ids, mask, rows = batch["input_ids"], batch["attention_mask"], batch["labels"]
            hidden, output = self.outputs(m, ids, mask)
            triggered, clean = rows != CLEAN, rows == CLEAN
            pinned = self.representation(m, hidden, output, mask)[triggered]
            pin = _masked_mse(pinned, vectors.to(pinned)[rows[triggered]])
            kept = self.preserved(m, hidden, output, mask)[clean]
            with torch.no_grad():
                frozen_hidden, frozen_output = self.outputs(frozen, ids[clean], mask[clean])
                reference = self.preserved(frozen, frozen_hidden, frozen_output, mask[clean])
            return pin + cfg.clean_weight * _masked_mse(kept, reference)

        model.requires_grad_(True)
        train_classifier(model, loaded.tokenizer,
                         pinning_examples([e.text for e in clean_train], cfg.triggers, cfg.seed),
                         cfg.training, loss_fn=loss, progress=progress,
                         description=f"poison: {self.name}", runtime=runtime)
