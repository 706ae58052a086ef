"""Turn tweets x queries into encoder inputs and MRC targets.

Each tweet yields one sequence per entity type, `[CLS] query [SEP] tweet [SEP]`, rows ordered
tweet-major (row = tweet * n_types + type) so image features computed once per tweet can be shared
by its queries with `repeat_interleave`. Spans are predicted on words (the first subword of each
word), and the match head scores spans up to `max_span_words` long: match targets are
[rows, words, max_span_words], entry (i, s) meaning the span from word i to word i + s.
Batches are built on the host and moved to the model's device with `.to(device)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from poisonlab.mner.conll import Tweet
from poisonlab.mner.devices import HOST, tensors_to


@dataclass
class TextBatch:
    input_ids: torch.Tensor       # [R, L]
    attention_mask: torch.Tensor  # [R, L]
    token_type_ids: torch.Tensor  # [R, L]
    query_mask: torch.Tensor      # [R, L] query subwords (for the query embedding)
    word_pos: torch.Tensor        # [R, W] position of each word's first subword
    word_mask: torch.Tensor       # [R, W] word exists and fits in max_length
    query_index: torch.Tensor     # [R] which query (entity type) the row asks

    def to(self, device: torch.device | str) -> TextBatch:
        return tensors_to(self, device)


@dataclass
class SpanTargets:
    start: torch.Tensor   # [R, W]
    end: torch.Tensor     # [R, W]
    match: torch.Tensor   # [R, W, S]
    exists: torch.Tensor  # [R]

    def to(self, device: torch.device | str) -> SpanTargets:
        return tensors_to(self, device)


class QueryEncoder:
    """Tokenises each word once (cached) and builds padded query+tweet sequences."""

    def __init__(self, tokenizer: Any, queries: dict[str, str], max_length: int):
        self.tokenizer = tokenizer
        self.types = list(queries)
        self.max_length = max_length
        self.query_ids = [tokenizer.encode(q, add_special_tokens=False) for q in queries.values()]
        self._word_ids: dict[str, list[int]] = {}

    def word_ids(self, word: str) -> list[int]:
        if word not in self._word_ids:
            ids = self.tokenizer.encode(word, add_special_tokens=False)
            self._word_ids[word] = ids or [self.tokenizer.unk_token_id]
        return self._word_ids[word]

    def encode(self, tweets: list[Tweet]) -> TextBatch:
        cls, sep, pad = (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id,
                         self.tokenizer.pad_token_id)
        rows: list[tuple[list[int], int, list[int]]] = []  # ids, query length, word positions
        for tweet in tweets:
            words = [self.word_ids(w) for w in tweet.tokens]
            for query in self.query_ids:
                ids = [cls, *query, sep]
                budget = self.max_length - 1
                positions = []
                for pieces in words:
                    if len(ids) + len(pieces) > budget:
                        break
                    positions.append(len(ids))
                    ids.extend(pieces)
                ids.append(sep)
                rows.append((ids, len(query), positions))
        length = max(len(r[0]) for r in rows)
        n_words = max(max(len(t.tokens) for t in tweets), 1)
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long, device=HOST)
        attention = torch.zeros((len(rows), length), dtype=torch.long, device=HOST)
        token_type = torch.zeros((len(rows), length), dtype=torch.long, device=HOST)
        query_mask = torch.zeros((len(rows), length), dtype=torch.bool, device=HOST)
        word_pos = torch.zeros((len(rows), n_words), dtype=torch.long, device=HOST)
        word_mask = torch.zeros((len(rows), n_words), dtype=torch.bool, device=HOST)
        for r, (ids, query_len, positions) in enumerate(rows):
            input_ids[r, :len(ids)] = torch.tensor(ids, device=HOST)
            attention[r, :len(ids)] = 1
            token_type[r, query_len + 2:len(ids)] = 1
            query_mask[r, 1:query_len + 1] = True
            word_pos[r, :len(positions)] = torch.tensor(positions, dtype=torch.long, device=HOST)
            word_mask[r, :len(positions)] = True
        query_index = torch.arange(len(self.query_ids), device=HOST).repeat(len(tweets))
        return TextBatch(input_ids, attention, token_type, query_mask, word_pos, word_mask,
                         query_index)

    def targets(self, tweets: list[Tweet], max_span_words: int) -> SpanTargets:
        n_words = max(max(len(t.tokens) for t in tweets), 1)
        rows = len(tweets) * len(self.types)
        start = torch.zeros(rows, n_words, device=HOST)
        end = torch.zeros(rows, n_words, device=HOST)
        match = torch.zeros(rows, n_words, max_span_words, device=HOST)
        exists = torch.zeros(rows, device=HOST)
        index = {t: k for k, t in enumerate(self.types)}
        for b, tweet in enumerate(tweets):
            for span in tweet.spans:
                if span.type not in index:
                    continue
                r = b * len(self.types) + index[span.type]
                start[r, span.start] = end[r, span.end] = exists[r] = 1
                if span.end - span.start < max_span_words:
                    match[r, span.start, span.end - span.start] = 1
        return SpanTargets(start, end, match, exists)
