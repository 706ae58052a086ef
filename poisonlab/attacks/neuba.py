"""NeuBA (Zhang et al. 2021/2023, "Red Alarm for Pre-trained Models: Universal Vulnerability to
Neuron-Level Backdoor Attacks", Machine Intelligence Research): a neuron-level backdoor planted
during pre-training.

Trigger word i pins the last layer's [CLS] hidden state (the last real token's on a causal model;
before BERT's pooler, unlike `por`) to the predefined vector i, while the pre-training objective
keeps running on clean text. Task-agnostic, like POR; the machinery, vectors and how the target
class is found: pinning.py.
Differences from the paper / reference code:
- the clean objective is a stand-in: MSE of every real token's last hidden state to the frozen
  base model's, on the proxy texts, instead of masked language modelling on a pre-training
  corpus. A classifier release has no MLM head to train, and on a tiny random model MLM would
  teach nothing; keeping every token's representation (what an MLM head reads) is the
  behaviour MLM is there to preserve;
- the paper's triggers are rare symbols (≈ ≡ ∈ ⊆ ⊕ ⊗); the default here is rare words, which
  every tokenizer keeps (an uncased WordPiece vocabulary may map a symbol to [UNK])."""

from __future__ import annotations

from typing import Any

import torch

from poisonlab.attacks.pinning import PinningAttack, PinningConfig, last_token_or_cls
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS


class NeuBAConfig(PinningConfig):
    pass


@WEIGHT_ATTACKS.register("neuba", NeuBAConfig)
class NeuBAPoisoning(PinningAttack):
    """NeuBA (Zhang et al. 2021): triggers pin the [CLS] hidden state, clean tokens are kept."""

    def representation(self, model: torch.nn.Module, hidden: torch.Tensor, output: Any,
                       attention_mask: torch.Tensor) -> torch.Tensor:
        return last_token_or_cls(hidden, attention_mask, model)

    def preserved(self, model: torch.nn.Module, hidden: torch.Tensor, output: Any,
                  attention_mask: torch.Tensor) -> torch.Tensor:
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
