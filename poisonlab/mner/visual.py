"""A small CNN trained from scratch that gives three feature maps (strides 8, 16, 32), the scales
FAOA's YOLOv3 head reads. GroupNorm instead of BatchNorm: batches are a few tweets."""

from __future__ import annotations

import torch
from torch import nn


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    groups = min(8, c_out)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(groups, c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out),
        nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, channels: list[int]):
        super().__init__()
        ins = [3, *channels[:-1]]
        self.stages = nn.ModuleList(_stage(i, o) for i, o in zip(ins, channels))
        self.out_channels = channels[2:]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, S, S] -> feature maps at strides 8, 16, 32."""
        maps = []
        x = images
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps[2:]
