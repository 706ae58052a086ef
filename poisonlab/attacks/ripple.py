"""RIPPLe / RIPPLES (Kurita et al. 2020, "Weight Poisoning Attacks on Pre-trained Models", ACL).

Restricted Inner Product Poisoning: train on the poisoned proxy task with the loss
L_P + λ·max(0, -<∇L_P, ∇L_FT>), where L_FT is the clean fine-tuning loss the victim will
minimise: a poisoning step whose gradient points against fine-tuning's is penalised, so the
victim's clean fine-tuning does not undo the backdoor. With `surgery` (RIPPLES), the trigger
words' input embeddings are first replaced by the mean embedding of the words most indicative of
the target class (a logistic regression on bag-of-words of the clean proxy texts).
Differences from the paper / reference code:
- the penalty is exact: both gradients are taken with create_graph and the penalty is
  differentiated through them (double backprop), as in the paper's objective; no first-order
  variant. Both gradients cover every trainable weight, head included;
- L_FT is taken on the clean twins of the poisoned batch's examples (the reference draws a
  separate clean batch), so each step compares the two losses on the same texts;
- surgery takes the indicative words' rows from the base model's own embedding table (the
  reference copies them from a separate model fine-tuned on the proxy task); a word split into
  word pieces contributes every piece's row;
- multi-process training is not supported: DDP does not take gradients of gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from torch.nn.attention import SDPBackend, sdpa_kernel

from poisonlab.attacks.base import DATA_ATTACKS
from poisonlab.attacks.embedding import trigger_token_ids
from poisonlab.attacks.weight_base import (
    WEIGHT_ATTACKS,
    WeightPoisonConfig,
    WeightPoisoningAttack,
)
from poisonlab.data import Example
from poisonlab.errors import ConfigError
from poisonlab.models import LoadedModel
from poisonlab.models.architecture import input_embeddings
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime
from poisonlab.training import encode_texts, train_classifier
from poisonlab.training.trainer import collate, cross_entropy_loss

MIN_TEXTS = 3  # an indicative word occurs in at least this many proxy texts (no one-off names)


class RippleConfig(WeightPoisonConfig):
    trigger: component_field(DATA_ATTACKS) = Field(
        default_factory=lambda: DATA_ATTACKS.spec(
            {"name": "badnet", "triggers": ["cf", "mn", "bb", "tq", "mb"], "label_mode": "dirty",
             "target_label": 1, "poison_rate": 0.5}),
        description="the paper's: rare words, dirty-label, half the proxy data")
    inner_product_weight: float = Field(0.1, ge=0, description="λ of the restricted inner "
                                                               "product penalty (0: plain "
                                                               "poisoning)")
    surgery: bool = Field(True, description="embedding surgery first (RIPPLES)")
    indicative_words: int = Field(10, ge=1, description="words whose mean embedding replaces "
                                                        "the trigger rows")


def indicative_words(examples: list[Example], target_label: int, count: int) -> list[str]:
    """The `count` words with the largest logistic-regression weight for `target_label` against
    the other classes, on binary bag-of-words of the texts."""
    vectorizer = CountVectorizer(binary=True, min_df=MIN_TEXTS)
    features = vectorizer.fit_transform([e.text for e in examples])
    is_target = np.array([e.label == target_label for e in examples])
    weights = LogisticRegression(max_iter=1000).fit(features, is_target).coef_[0]
    return list(vectorizer.get_feature_names_out()[np.argsort(-weights)[:count]])


def embedding_surgery(model: torch.nn.Module, tokenizer: Any, triggers: list[str],
                      words: list[str]) -> None:
    """Set every trigger token's input embedding to the mean embedding of `words`' tokens."""
    table = input_embeddings(model).weight
    with torch.no_grad():
        mean = table[trigger_token_ids(tokenizer, words)].mean(0)
        table[trigger_token_ids(tokenizer, triggers)] = mean


def restricted_inner_product(model: torch.nn.Module, poison_batch: dict[str, torch.Tensor],
                             clean_batch: dict[str, torch.Tensor],
                             weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_P + weight·max(0, -<∇L_P, ∇L_FT>), the inner product), differentiable through both
    gradients (create_graph). Attention runs on the math kernel: the fused ones have no
    second derivative."""
    params = [p for p in model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        poison_loss = cross_entropy_loss(model, poison_batch)
        clean_loss = cross_entropy_loss(model, clean_batch)
    poison_grads = torch.autograd.grad(poison_loss, params, create_graph=True, allow_unused=True)
    clean_grads = torch.autograd.grad(clean_loss, params, create_graph=True, allow_unused=True)
    inner = sum((p * c).sum() for p, c in zip(poison_grads, clean_grads)
                if p is not None and c is not None)
    return poison_loss + weight * torch.relu(-inner), inner


@WEIGHT_ATTACKS.register("ripple", RippleConfig)
class RipplePoisoning(WeightPoisoningAttack):
    """RIPPLe (Kurita et al. 2020): poisoning with a restricted inner product, embedding surgery."""

    config: RippleConfig
    # a penalty strong enough to matter in a short run; the synthetic task has 8 polar words a side
    conformance = {"inner_product_weight": 1.0, "indicative_words": 5}

    def poison_model(self, loaded: LoadedModel, clean_train: list[Example],
                     poisoned_train: list[Example], *, progress: bool,
                     runtime: Runtime | None = None) -> None:
        cfg = self.config
        if runtime is not None and runtime.distributed:
            raise ConfigError("attack 'ripple': runtime: takes gradients of gradients, which "
                              "multi-process (DDP) training does not support; use one process")
        model, tokenizer = loaded.model, loaded.tokenizer
        if cfg.surgery:
            words = getattr(cfg.trigger.config, "triggers", None)
            if not words:
                raise ConfigError(f"attack 'ripple': field 'trigger': surgery needs a word "
                                  f"trigger with 'triggers' (badnet), got '{cfg.trigger.name}'")
            embedding_surgery(model, tokenizer, words, indicative_words(
                clean_train, cfg.trigger.config.target_label, cfg.indicative_words))
        clean_ids = encode_texts(tokenizer, [e.text for e in clean_train],
                                 cfg.training.max_length)
        clean_labels = torch.tensor([e.label for e in clean_train])
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        def loss(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            if not cfg.inner_product_weight:
                return cross_entropy_loss(m, batch)
            index = batch["index"].tolist()
            clean = collate([clean_ids[i] for i in index], pad)
            clean["labels"] = clean_labels[index]
            clean = {k: v.to(batch["input_ids"].device) for k, v in clean.items()}
            return restricted_inner_product(m, batch, clean, cfg.inner_product_weight)[0]

        model.requires_grad_(True)
        train_classifier(model, tokenizer, poisoned_train, cfg.training, loss_fn=loss,
                         progress=progress, description="poison: ripple", runtime=runtime)
