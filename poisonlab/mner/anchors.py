"""FAOA-style one-stage grounding targets: YOLOv3 anchors over three scales, box encode/decode.

A ground-truth box is assigned to the anchor (of all nine) whose shape matches it best and to the
cell holding its centre at that anchor's scale, as in YOLOv3 / FAOA (Yang et al. 2019). The offsets
are (sigmoid-space) cell-relative centre and log size ratio to the anchor. The anchor table lives
on the host; assignment and decoding work on the device of the boxes or offsets they are given."""

from __future__ import annotations

import torch

from poisonlab.mner.boxes import box_iou, cxcywh_to_xyxy, xyxy_to_cxcywh
from poisonlab.mner.devices import HOST

# YOLOv3 anchors (width, height) in pixels of a 416x416 input; rows = strides 8, 16, 32.
YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)), \
    ((116, 90), (156, 198), (373, 326))
STRIDES = (8, 16, 32)
ANCHORS_PER_SCALE = 3


class AnchorGrid:
    """Anchors scaled to an `image_size` square input."""

    def __init__(self, image_size: int):
        self.image_size = image_size
        scale = image_size / 416
        # [3, 3, 2]
        self.anchors = torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32, device=HOST) * scale
        self.grid_sizes = [image_size // s for s in STRIDES]

    def assign(self, box: torch.Tensor) -> tuple[int, int, int, int, torch.Tensor]:
        """Return (scale, anchor, row, col, target offsets [tx, ty, tw, th] on `box`'s device) for
        one xyxy box."""
        device = box.device
        cx, cy, w, h = xyxy_to_cxcywh(box).tolist()
        shapes = self.anchors.to(device).reshape(-1, 2)
        shape_boxes = torch.cat([-shapes / 2, shapes / 2], dim=1)
        own = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2]], device=device)
        best = int(box_iou(own, shape_boxes)[0].argmax())
        scale, anchor = divmod(best, ANCHORS_PER_SCALE)
        stride, cells = STRIDES[scale], self.grid_sizes[scale]
        col = min(max(int(cx // stride), 0), cells - 1)
        row = min(max(int(cy // stride), 0), cells - 1)
        anchor_w, anchor_h = self.anchors[scale, anchor].tolist()
        target = torch.tensor([cx / stride - col, cy / stride - row,
                               torch.log(torch.tensor(w / anchor_w, device=device)).item(),
                               torch.log(torch.tensor(h / anchor_h, device=device)).item()],
                              device=device)
        return scale, anchor, row, col, target

    def decode(self, scale: int, anchor: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
               offsets: torch.Tensor) -> torch.Tensor:
        """xyxy boxes from offsets [..., 4] in the same space as `assign`'s targets
        (tx, ty already in [0, 1]: callers apply the sigmoid to raw outputs)."""
        stride = STRIDES[scale]
        sizes = self.anchors.to(offsets.device)[scale][anchor]
        cx = (col + offsets[..., 0]) * stride
        cy = (row + offsets[..., 1]) * stride
        w = sizes[..., 0] * torch.exp(offsets[..., 2])
        h = sizes[..., 1] * torch.exp(offsets[..., 3])
        return cxcywh_to_xyxy(torch.stack([cx, cy, w, h], dim=-1))
