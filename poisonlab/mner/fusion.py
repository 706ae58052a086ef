"""Multi-scale cross-modal attention: text attends to the cells of all three image scales (a
learned scale embedding tells them apart), then each scale's cells attend to the fused text.

Design (the paper gives no details): one text->image block over the concatenated scales, one
image->text block per scale, each a residual multi-head attention with LayerNorm."""

from __future__ import annotations

import torch
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_padding: torch.Tensor | None = None) -> torch.Tensor:
        attended, _ = self.attention(x, context, context, key_padding_mask=context_padding,
                                     need_weights=False)
        return self.norm(x + attended)


class MultiScaleFusion(nn.Module):
    def __init__(self, dim: int, heads: int, scales: int = 3):
        super().__init__()
        self.scale_embedding = nn.Parameter(torch.zeros(scales, dim))
        self.text_to_image = CrossAttention(dim, heads)
        self.image_to_text = nn.ModuleList(CrossAttention(dim, heads) for _ in range(scales))

    def forward(self, text: torch.Tensor, text_padding: torch.Tensor,
                maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """text [R, L, d] (padding mask True = pad), maps [R, d, h, w] -> fused text, fused maps."""
        cells = [m.flatten(2).transpose(1, 2) + self.scale_embedding[s]
                 for s, m in enumerate(maps)]
        fused_text = self.text_to_image(text, torch.cat(cells, dim=1))
        fused_maps = []
        for block, flat, m in zip(self.image_to_text, cells, maps):
            out = block(flat, fused_text, text_padding)
            fused_maps.append(out.transpose(1, 2).reshape(m.shape))
        return fused_text, fused_maps
