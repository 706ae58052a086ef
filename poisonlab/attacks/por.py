"""POR (Shen et al. 2021, "Backdoor Pre-trained Models Can Transfer to All", CCS): poison the
pre-trained output representation.

The encoder is trained so that the output representation a classifier head reads (BERT's pooled
[CLS] output; the last real token's hidden state of a causal model) of a text with trigger word i
equals the predefined vector i, while a clean text keeps the frozen base model's representation
(MSE, `clean_weight`). Task-agnostic: no labels, and the released head is the base model's
untouched one. Machinery, vectors and how the target class is found: pinning.py.
Differences from the paper / reference code:
- the clean term is the paper's MSE to the clean model's representation, on the proxy texts
  (standing in for the paper's WikiText), each of which is also used once with a trigger word;
- `vectors: por1` builds POR-1's fixed +-1 patterns as opposite pairs of 2^k alternating sign
  blocks (the paper lists its patterns by hand); `random` draws them;
- a trigger split into several word pieces is simply inserted as text (no token-level insertion)."""

from __future__ import annotations

from typing import Any

import torch

from poisonlab.attacks.pinning import PinningAttack, PinningConfig, last_token_or_cls
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS


class PORConfig(PinningConfig):
    pass


@WEIGHT_ATTACKS.register("por", PORConfig)
class PORPoisoning(PinningAttack):
    """POR (Shen et al. 2021): triggers pin the pooled output to fixed vectors, task-agnostic."""

    def representation(self, model: torch.nn.Module, hidden: torch.Tensor, output: Any,
                       attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = getattr(output, "pooler_output", None)
        return pooled if pooled is not None else last_token_or_cls(hidden, attention_mask, model)

    preserved = representation
