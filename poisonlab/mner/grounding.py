"""Grounding targets for a batch and the query's predicted box.

A (tweet, type) row with boxes gets one assignment per box (anchors.AnchorGrid.assign); the row's
weight is 1 for manual boxes and `weak_box_weight` for weak ones. A row known to have no region of
its type ("absent", with `loss.no_box_means_absent`) is trained towards the model's no-region logit,
the counterpart of SQuAD 2.0's no-answer option. The predicted box of a row is the
highest-confidence anchor over all cells of all three scales.

Targets are built on the host and move with their batch (`GroundingTargets.to`); everything
computed from model outputs stays on their device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from poisonlab.mner.anchors import AnchorGrid
from poisonlab.mner.devices import HOST, tensors_to


@dataclass
class GroundingTargets:
    row: torch.Tensor      # [A] sequence row of each assignment
    scale: torch.Tensor    # [A]
    anchor: torch.Tensor   # [A]
    cell_y: torch.Tensor   # [A]
    cell_x: torch.Tensor   # [A]
    offsets: torch.Tensor  # [A, 4] tx, ty (in [0, 1)), tw, th
    weight: torch.Tensor   # [A] the row's box-source weight
    absent: torch.Tensor   # [N] rows whose type has no region in their image

    def __len__(self) -> int:
        return len(self.row)

    def to(self, device: torch.device | str) -> GroundingTargets:
        return tensors_to(self, device)


def build_targets(grid: AnchorGrid, row_boxes: dict[int, tuple[torch.Tensor, float]],
                  absent: list[int] = ()) -> GroundingTargets:
    """`row_boxes`: row -> (xyxy boxes [n, 4] in input pixels, on the host, weight); `absent`: rows
    whose type has no region in the image. The targets are on the host."""
    fields: list[list] = [[] for _ in range(7)]
    for row, (boxes, weight) in sorted(row_boxes.items()):
        for box in boxes:
            scale, anchor, cy, cx, offsets = grid.assign(box)
            for store, value in zip(fields, (row, scale, anchor, cy, cx, offsets, weight)):
                store.append(value)
    longs = [torch.tensor(f, dtype=torch.long, device=HOST) for f in fields[:5]]
    offsets = torch.stack(fields[5]).to(HOST) if fields[5] else torch.zeros(0, 4, device=HOST)
    return GroundingTargets(*longs, offsets,
                            torch.tensor(fields[6], dtype=torch.float32, device=HOST),
                            torch.tensor(sorted(absent), dtype=torch.long, device=HOST))


def flat_confidence(grounding: list[torch.Tensor]) -> torch.Tensor:
    """Confidence logits of every (scale, anchor, cell) as [R, total], scales concatenated."""
    return torch.cat([g[:, :, 4].flatten(1) for g in grounding], dim=1)


def grounded_features(grounding: list[torch.Tensor], no_region: torch.Tensor,
                      maps: list[torch.Tensor]) -> torch.Tensor:
    """The fused cell features weighted by the grounding head's confidence (softmax over every
    anchor, cell and scale and the no-region logit: the distribution the confidence loss trains),
    [R, d]; near zero when the query finds no region. This is how the grounding loss reaches the
    NER heads: they read the region the query is grounded to."""
    per_cell = torch.cat([g[:, :, 4].logsumexp(1).flatten(1) for g in grounding], dim=1)
    weights = torch.cat([per_cell, no_region.unsqueeze(1)], dim=1).softmax(1)[:, :-1]
    cells = torch.cat([m.flatten(2) for m in maps], dim=2)
    return torch.einsum("rc,rdc->rd", weights, cells)


def flat_index(grounding: list[torch.Tensor], scale: torch.Tensor, anchor: torch.Tensor,
               cell_y: torch.Tensor, cell_x: torch.Tensor) -> torch.Tensor:
    device = scale.device
    sizes = [g.shape[1] * g.shape[3] * g.shape[4] for g in grounding]
    starts = torch.tensor([0, *sizes[:-1]], device=device).cumsum(0)
    widths = torch.tensor([g.shape[4] for g in grounding], device=device)
    heights = torch.tensor([g.shape[3] for g in grounding], device=device)
    return (starts[scale] + anchor * heights[scale] * widths[scale] + cell_y * widths[scale]
            + cell_x)


def predict_boxes(grid: AnchorGrid, grounding: list[torch.Tensor]) -> torch.Tensor:
    """Best box of each row, xyxy in input pixels: [R, 4] float32, on the outputs' device."""
    best = flat_confidence(grounding).argmax(dim=1)
    boxes = torch.zeros(len(best), 4, device=best.device)
    start = 0
    for scale, g in enumerate(grounding):
        anchors, h, w = g.shape[1], g.shape[3], g.shape[4]
        local = best - start
        inside = (local >= 0) & (local < anchors * h * w)
        rows = inside.nonzero().squeeze(1)
        if len(rows):
            local = local[rows]
            anchor, cell = local // (h * w), local % (h * w)
            cy, cx = cell // w, cell % w
            raw = g[rows, anchor, :4, cy, cx]
            offsets = torch.cat([raw[:, :2].sigmoid(), raw[:, 2:]], dim=1)
            boxes[rows] = grid.decode(scale, anchor, cy.float(), cx.float(), offsets.float())
        start += anchors * h * w
    return boxes
