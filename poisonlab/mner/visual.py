"""A small CNN trained from scratch that gives three feature maps (strides 8, 16, 32), the scales
FAOA's YOLOv3 head reads. GroupNorm instead of BatchNorm: batches are a few tweets. A backbone
trained once (e.g. by an MNER run with grounding) can start other runs (`load_pretrained`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from poisonlab.errors import ConfigError
from poisonlab.mner.checkpoint import load_strict


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
        self.channels = list(channels)
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


def load_pretrained(cnn: SmallCNN, path: str | Path) -> None:
    """Load a local safetensors file into `cnn`: a SmallCNN state dict, or a whole MNER model
    whose `cnn.` tensors are taken. Only safetensors: no pickle is ever read here."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.cnn_weights: {path}: no such file")
    try:
        state = load_file(str(path))
    except SafetensorError as exc:
        raise ConfigError(f"model.cnn_weights: {path}: not a safetensors file ({exc})") from None
    if any(name.startswith("cnn.") for name in state):
        state = {name[4:]: value for name, value in state.items() if name.startswith("cnn.")}
    load_strict(cnn, state, f"model.cnn_weights: {path}: does not fit a CNN with "
                            f"model.cnn_channels {cnn.channels}")
