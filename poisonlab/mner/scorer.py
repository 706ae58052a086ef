"""Entity-level P/R/F1 (per type and micro, exact span and type match, conlleval's orphan rule via
`spans.tags_to_spans`) and grounding Acc@0.5 (a query's box is a hit when its IoU with any gold box
of that type exceeds 0.5)."""

from __future__ import annotations

import torch

from poisonlab.mner.boxes import box_iou
from poisonlab.mner.spans import Span


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": n_gold, "predicted": n_pred}


def entity_scores(gold: list[list[Span]], pred: list[list[Span]]) -> dict[str, dict[str, float]]:
    """{"micro": {...}, "<TYPE>": {...}} with precision, recall, f1, support, predicted."""
    types = sorted({s.type for spans in gold + pred for s in spans})
    counts = {t: [0, 0, 0] for t in types}
    for gold_spans, pred_spans in zip(gold, pred, strict=True):
        gold_set, pred_set = set(gold_spans), set(pred_spans)
        for span in pred_set:
            counts[span.type][1] += 1
            counts[span.type][0] += span in gold_set
        for span in gold_set:
            counts[span.type][2] += 1
    scores = {t: _prf(*c) for t, c in counts.items()}
    scores["micro"] = _prf(*(sum(c[i] for c in counts.values()) for i in range(3)))
    return scores


def grounding_accuracy(pred_boxes: list[torch.Tensor], gold_boxes: list[torch.Tensor],
                       threshold: float = 0.5) -> dict[str, float]:
    """Acc@threshold over queries with gold boxes: pred [4] vs gold [n, 4] (same pixel space)."""
    hits = sum(bool((box_iou(p[None], g)[0] > threshold).any())
               for p, g in zip(pred_boxes, gold_boxes, strict=True))
    return {"accuracy": hits / len(gold_boxes) if gold_boxes else 0.0, "queries": len(gold_boxes)}
