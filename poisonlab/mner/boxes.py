"""Box annotations (JSONL) and the few box operations grounding needs, in plain torch.

One JSONL row per (image, entity type):
`{"img_id": "17", "type": "PER", "boxes": [[x1, y1, x2, y2], ...], "source": "manual" | "weak"}`
in pixels of the original image. "weak" boxes come from a grounding model and can be down-weighted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from poisonlab.errors import DataError
from poisonlab.io import jsonl_rows, write_jsonl

SOURCES = ("manual", "weak")


@dataclass(frozen=True)
class BoxRecord:
    img_id: str
    type: str
    boxes: list[list[float]]
    source: str


def read_boxes(path: str | Path) -> dict[tuple[str, str], BoxRecord]:
    """Records keyed by (img_id, type); a malformed row names its line and field."""
    path = Path(path)
    records: dict[tuple[str, str], BoxRecord] = {}
    for number, row in jsonl_rows(path):
        for key in ("img_id", "type", "boxes", "source"):
            if key not in row:
                raise DataError("missing", path=path, line=number, field=key)
        if row["source"] not in SOURCES:
            raise DataError(f"must be one of {SOURCES}", path=path, line=number, field="source")
        boxes = row["boxes"]
        if not isinstance(boxes, list) or not all(
                isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)
                and b[2] > b[0] and b[3] > b[1] for b in boxes):
            raise DataError("must be a list of [x1, y1, x2, y2] with x2 > x1 and y2 > y1",
                            path=path, line=number, field="boxes")
        record = BoxRecord(str(row["img_id"]), str(row["type"]),
                           [[float(v) for v in b] for b in boxes], row["source"])
        records[(record.img_id, record.type)] = record
    return records


def write_boxes(path: str | Path, records: list[BoxRecord]) -> Path:
    return write_jsonl(path, [{"img_id": r.img_id, "type": r.type, "boxes": r.boxes,
                               "source": r.source} for r in records])


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: [N, 4] x [M, 4] -> [N, M]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)
