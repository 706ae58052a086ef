"""Loss terms beyond plain cross-entropy: knowledge distillation, feature alignment, and the
W2SDefense combination of the three. Pure functions of tensors, so each is testable alone; the
models that produce the tensors live elsewhere (defenses/w2sdefense.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Pooling = Literal["last", "mean", "first"]
Alignment = Literal["per_example", "reference"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), averaged over the batch (Hinton et al. 2015;
    the T^2 keeps the gradient scale independent of T)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor,
                pooling: Pooling) -> torch.Tensor:
    """[B, L, D] -> [B, D]: the last real token (causal LMs read the sequence there), the mean
    over real tokens, or the first token ([CLS] of encoders). Padding never contributes."""
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if pooling == "first":
        return hidden[:, 0]
    # the last position whose mask is 1 (works for left and right padding)
    positions = torch.arange(mask.shape[1], device=hidden.device).expand_as(mask)
    last = (positions * attention_mask.long()).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def feature_alignment_loss(teacher_features: torch.Tensor, student_hidden: torch.Tensor,
                           attention_mask: torch.Tensor, *, mode: Alignment = "per_example",
                           pooling: Pooling = "last") -> torch.Tensor:
    """Mean squared difference per hidden dimension between teacher and student features.

    per_example: teacher feature i ([B, D]) against the student's pooled feature i.
    reference: as the W2SDefense reference code: the last example's teacher feature against
    every student token of every example ([B, L, D]), padding included."""
    if mode == "per_example":
        pooled = pool_hidden(student_hidden, attention_mask, pooling)
        return F.mse_loss(pooled, teacher_features.to(pooled.dtype))
    reference = teacher_features[-1].to(student_hidden.dtype)
    return F.mse_loss(student_hidden, reference.expand_as(student_hidden))


@dataclass
class UnlearningLoss:
    """The three terms and their weighted sum a*CE + b*KD + c*FA (terms kept for logging)."""

    total: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor
    fa: torch.Tensor


def unlearning_loss(student_logits: torch.Tensor, labels: torch.Tensor,
                    teacher_logits: torch.Tensor, teacher_features: torch.Tensor,
                    student_hidden: torch.Tensor, attention_mask: torch.Tensor, *,
                    a: float, b: float, c: float, temperature: float,
                    mode: Alignment = "per_example", pooling: Pooling = "last") -> UnlearningLoss:
    """W2SDefense's student loss: a*CE(z_s, y) + b*T^2*KL(p_t^T || p_s^T) + c*FA."""
    ce = F.cross_entropy(student_logits, labels)
    kd = distillation_loss(student_logits, teacher_logits, temperature)
    fa = feature_alignment_loss(teacher_features, student_hidden, attention_mask, mode=mode,
                                pooling=pooling)
    return UnlearningLoss(a * ce + b * kd + c * fa, ce, kd, fa)
