"""The MNER-QG network: text encoder, small CNN, cross-modal fusion, and four heads
(existence, MRC start/end/match, FAOA grounding).

Image features are computed once per tweet and expanded to its queries. In text-only mode
(`image: false`) the CNN, fusion and grounding head are not built."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from poisonlab.mner.anchors import ANCHORS_PER_SCALE
from poisonlab.mner.config import MnerModelConfig
from poisonlab.mner.encoding import TextBatch
from poisonlab.mner.fusion import MultiScaleFusion
from poisonlab.mner.grounding import grounded_features
from poisonlab.mner.visual import SmallCNN

COORD_CHANNELS = 8


@dataclass
class MnerOutput:
    start: torch.Tensor              # [R, W] logits
    end: torch.Tensor                # [R, W]
    match: torch.Tensor              # [R, W, S] span (i, i + s)
    exists: torch.Tensor             # [R]
    grounding: list[torch.Tensor] | None  # per scale [R, anchors, 5, h, w]: tx, ty, tw, th, conf
    no_region: torch.Tensor | None = None  # [R] logit of "no region of the queried type"


def coordinate_map(size: int, device: torch.device, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """FAOA's 8 coordinate channels for a size x size grid: cell corners, centre, 1/size
    (computed in float32, returned as `dtype`)."""
    steps = torch.arange(size, device=device, dtype=torch.float32)
    x0 = (steps / size * 2 - 1).expand(size, size)
    y0 = x0.t()
    x1, y1 = x0 + 2 / size, y0 + 2 / size
    inv = torch.full((size, size), 1 / size, device=device)
    return torch.stack([x0, y0, x1, y1, (x0 + x1) / 2, (y0 + y1) / 2, inv, inv]).to(dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


class SpanMatcher(nn.Module):
    """BERT-MRC's match head, concat(h_i, h_j) -> MLP, computed as A h_i + B h_j so only spans up
    to `max_span` words are scored (memory grows with words x max_span, not words squared)."""

    def __init__(self, hidden: int, inner: int, max_span: int):
        super().__init__()
        self.max_span = max_span
        self.left = nn.Linear(hidden, inner)
        self.right = nn.Linear(hidden, inner, bias=False)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(inner, 1))

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        left, right = self.left(words), self.right(words)
        n = words.shape[1]
        padded = nn.functional.pad(right, (0, 0, 0, self.max_span - 1))
        shifted = torch.stack([padded[:, s:s + n] for s in range(self.max_span)], dim=2)
        return self.out(left.unsqueeze(2) + shifted).squeeze(-1)


class GroundingHead(nn.Module):
    """FAOA head: [cell features, query embedding, coordinates] -> 3 anchors x (4 offsets + conf)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * dim + COORD_CHANNELS, dim, 1), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 1), nn.ReLU(inplace=True),
            nn.Conv2d(dim, ANCHORS_PER_SCALE * 5, 1))

    def forward(self, cells: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        rows, _, h, w = cells.shape
        coords = coordinate_map(h, cells.device, cells.dtype).expand(rows, -1, -1, -1)
        q = query[:, :, None, None].expand(-1, -1, h, w)
        out = self.net(torch.cat([cells, q, coords], dim=1))
        return out.reshape(rows, ANCHORS_PER_SCALE, 5, h, w)


class MnerQG(nn.Module):
    def __init__(self, encoder: nn.Module, config: MnerModelConfig, n_queries: int):
        super().__init__()
        self.config = config
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        # The heads see the query directly (mean of its tokens + a learned per-query vector, concat
        # + MLP, then FiLM-style scaling): the four queries share most words, and a small encoder
        # separates them slowly through attention alone. The paper leaves the head design open.
        self.query_embedding = nn.Embedding(n_queries, hidden)
        nn.init.normal_(self.query_embedding.weight, std=encoder.config.initializer_range)
        self.word_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.query_film = nn.Linear(hidden, hidden)
        self.start_head = nn.Linear(hidden, 1)
        self.end_head = nn.Linear(hidden, 1)
        self.matcher = SpanMatcher(hidden, min(hidden, 256), config.max_span_words)
        self.exists_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        if config.image:
            dim = config.fusion_dim
            self.cnn = SmallCNN(config.cnn_channels)
            self.map_projections = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in self.cnn.out_channels)
            self.text_projection = nn.Linear(hidden, dim)
            self.fusion = MultiScaleFusion(dim, config.fusion_heads)
            self.back_projection = nn.Linear(dim, hidden)
            nn.init.zeros_(self.back_projection.weight)  # starts as the text-only model
            nn.init.zeros_(self.back_projection.bias)
            self.grounding_head = GroundingHead(dim)
            self.no_region_head = nn.Linear(dim, 1)
            self.visual_to_query = nn.Linear(dim, hidden)

    def _image_branch(self, hidden: torch.Tensor, text: TextBatch, images: torch.Tensor
                      ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Fused encoder states, grounding outputs per scale, no-region logits, and per row the
        visual evidence for the queried type (`visual_evidence`: the grounded region, or each
        scale's strongest cell)."""
        per_tweet = text.input_ids.shape[0] // images.shape[0]
        maps = [proj(m) for proj, m in zip(self.map_projections, self.cnn(images))]
        maps = [m.repeat_interleave(per_tweet, dim=0) for m in maps]  # CNN ran once per tweet
        # The text encoder is trained by the span and existence losses only: with gradients from
        # the grounding loss through here, the synthetic set's F1 fell from 73.8 to 51.8.
        fused_text, fused_maps = self.fusion(self.text_projection(hidden.detach()), text.attention_mask == 0,
                                             maps)
        query = masked_mean(fused_text, text.query_mask) + self.text_projection(
            self.query_embedding(text.query_index))
        grounding = [self.grounding_head(m, query) for m in fused_maps]
        no_region = self.no_region_head(query).squeeze(-1)
        if self.config.visual_evidence == "grounded":
            visual = grounded_features(grounding, no_region, fused_maps)
        else:
            visual = torch.stack([m.amax(dim=(2, 3)) for m in fused_maps]).mean(0)
        return hidden + self.back_projection(fused_text), grounding, no_region, visual

    def forward(self, text: TextBatch, images: torch.Tensor | None = None) -> MnerOutput:
        """`images` [B, 3, S, S] normalised, one per tweet; text rows are B x n_queries."""
        hidden = self.encoder(input_ids=text.input_ids, attention_mask=text.attention_mask,
                              token_type_ids=text.token_type_ids).last_hidden_state
        query = self.query_embedding(text.query_index)
        grounding = no_region = None
        if self.config.image:
            if images is None:
                raise ValueError("this model has an image branch: pass images")
            hidden, grounding, no_region, visual = self._image_branch(hidden, text, images)
            query = query + self.visual_to_query(visual)
        query = (query + masked_mean(hidden, text.query_mask)).unsqueeze(1)
        words = torch.gather(hidden, 1, text.word_pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        words = self.word_mlp(torch.cat([words, query.expand_as(words)], dim=-1))
        words = words * (1 + self.query_film(query))
        # Existence reads [CLS] and the strongest word feature: the features the span heads use,
        # so "some span of this type" and "this type exists" learn together.
        pooled = words.masked_fill(~text.word_mask.unsqueeze(-1), -1e4).max(dim=1).values
        exists = self.exists_head(torch.cat([hidden[:, 0], pooled], dim=-1)).squeeze(-1)
        return MnerOutput(self.start_head(words).squeeze(-1), self.end_head(words).squeeze(-1),
                          self.matcher(words), exists, grounding, no_region)
