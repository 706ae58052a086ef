"""MNER-QG training losses.

- start / end: BCE over the words of each (tweet, query) row;
- match: BCE over candidate spans whose start is a gold or predicted start and whose end is a gold
  or predicted end (BERT-MRC's "pred_and_gold" candidates: all pairs would be almost all negative);
- existence: BCE of "the tweet holds an entity of the queried type";
- grounding (FAOA): MSE of the assigned anchor's offsets (sigmoid x, y; raw log w, h) plus a
  cross-entropy that makes the assigned anchor the most confident of all anchors at all scales
  (soft target spread over a row's boxes); a row whose type is absent from the image makes the
  no-region logit the most confident instead. Box rows are weighted by their box source.

Losses are computed in float32 from the model's logits (bf16 or fp16 under autocast), on their
device; the targets must be on it too (`Batch.to`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from poisonlab.mner.config import LossConfig
from poisonlab.mner.encoding import SpanTargets
from poisonlab.mner.grounding import GroundingTargets, flat_confidence, flat_index
from poisonlab.mner.model import MnerOutput


def match_mask(output: MnerOutput, targets: SpanTargets, word_mask: torch.Tensor) -> torch.Tensor:
    """Valid (i, s) spans: both words exist, start/end are gold or predicted positives."""
    starts = (output.start > 0) | (targets.start > 0)
    ends = (output.end > 0) | (targets.end > 0)
    span = output.match.shape[2]
    pad = lambda x: F.pad(x, (0, span - 1))  # noqa: E731
    shifted_ends = torch.stack([pad(ends & word_mask)[:, s:s + ends.shape[1]] for s in range(span)], 2)
    return (starts & word_mask).unsqueeze(2) & shifted_ends


def regression_loss(grounding: list[torch.Tensor], targets: GroundingTargets) -> torch.Tensor:
    """Weighted MSE of the assigned anchors' offsets; zero for a perfect prediction."""
    if len(targets) == 0:
        return grounding[0].sum() * 0
    per_box = []
    for scale, g in enumerate(grounding):
        pick = (targets.scale == scale).nonzero().squeeze(1)
        if len(pick) == 0:
            continue
        raw = g[targets.row[pick], targets.anchor[pick], :4, targets.cell_y[pick],
                targets.cell_x[pick]].float()
        pred = torch.cat([raw[:, :2].sigmoid(), raw[:, 2:]], dim=1)
        per_box.append((targets.weight[pick], ((pred - targets.offsets[pick]) ** 2).sum(1)))
    weights = torch.cat([w for w, _ in per_box])
    losses = torch.cat([l for _, l in per_box])
    return (weights * losses).sum() / len(losses)


def confidence_loss(grounding: list[torch.Tensor], no_region: torch.Tensor,
                    targets: GroundingTargets) -> torch.Tensor:
    """Cross-entropy over [every anchor of every cell and scale, no region], averaged over the
    rows with boxes (weighted by box source) and the absent rows."""
    if len(targets) + len(targets.absent) == 0:
        return grounding[0].sum() * 0
    logits = torch.cat([flat_confidence(grounding), no_region.unsqueeze(1)], dim=1)
    log_probs = logits.float().log_softmax(1)
    device = log_probs.device
    rows, inverse = targets.row.unique(return_inverse=True)
    soft = torch.zeros(len(rows), log_probs.shape[1], device=device)
    index = flat_index(grounding, targets.scale, targets.anchor, targets.cell_y, targets.cell_x)
    soft.index_put_((inverse, index), torch.ones(len(index), device=device), accumulate=True)
    soft = soft / soft.sum(1, keepdim=True)
    weight = torch.zeros(len(rows), device=device).scatter_reduce(
        0, inverse, targets.weight, "amax", include_self=False)
    boxed = (weight * -(soft * log_probs[rows]).sum(1)).sum()
    absent = -log_probs[targets.absent, -1].sum()
    return (boxed + absent) / (len(rows) + len(targets.absent))


def mner_loss(output: MnerOutput, targets: SpanTargets, word_mask: torch.Tensor,
              grounding_targets: GroundingTargets | None, weights: LossConfig) -> dict[str, torch.Tensor]:
    mask = word_mask.float()
    words = mask.sum().clamp(min=1)
    start = (F.binary_cross_entropy_with_logits(output.start.float(), targets.start,
                                                reduction="none") * mask).sum() / words
    end = (F.binary_cross_entropy_with_logits(output.end.float(), targets.end, reduction="none")
           * mask).sum() / words
    candidates = match_mask(output, targets, word_mask).float()
    match = (F.binary_cross_entropy_with_logits(output.match.float(), targets.match,
                                                reduction="none")
             * candidates).sum() / candidates.sum().clamp(min=1)
    exists = F.binary_cross_entropy_with_logits(output.exists.float(), targets.exists)
    parts = {"start": start, "end": end, "match": match, "existence": exists}
    if output.grounding is not None and grounding_targets is not None and weights.grounding > 0:
        parts["grounding"] = (regression_loss(output.grounding, grounding_targets)
                              + confidence_loss(output.grounding, output.no_region, grounding_targets))
    parts["total"] = sum(getattr(weights, name) * value for name, value in parts.items())
    return parts
