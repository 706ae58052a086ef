"""Label scoring from a causal LM's next-token distribution, with the demonstration prefix encoded
once and its key/value cache reused for every query.

Cached path: the prefix runs once; each batch of queries runs on a copy of its cache repeated
across the batch. Queries are right-padded, positions continue after the prefix, and each score is
read at the query's own last real token, so padding never reaches a real token. Plain path
(`use_cache=False`): prefix and query are re-encoded together for every query; it exists to check
the cached path and as the benchmark's baseline. Both see the same token ids: the prefix and each
query are tokenized separately and concatenated (special tokens such as BOS only on the prefix)."""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch

from poisonlab.icl.verbalizer import ScoringMode, Verbalizer
from poisonlab.models import LoadedModel

Reduce = Callable[[torch.Tensor], torch.Tensor]  # [B, n_last, vocab] log-probs -> [B, X]


class LabelScorer:
    """Class log-scores (log mean label-word probability) for queries after a shared prefix.

    Results are memoised per (prefix, query), so a study that re-scores the same clean context or
    the same queries under another attack cell pays once."""

    def __init__(self, loaded: LoadedModel, verbalizer: Verbalizer, label_prefix: str = " ",
                 mode: ScoringMode = "first-token", batch_size: int = 16, use_cache: bool = True):
        self.loaded = loaded
        self.verbalizer = verbalizer
        self.label_prefix = label_prefix
        self.mode = mode
        self.batch_size = batch_size
        self.use_cache = use_cache
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    @property
    def _tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def score(self, prefix: str, queries: list[str]) -> np.ndarray:
        """[len(queries), classes] class log-scores (not normalised over classes)."""
        missing = list(dict.fromkeys(q for q in queries if (prefix, q) not in self._memo))
        if missing:
            scores = self._score(prefix, missing)
            self._memo.update({(prefix, q): s for q, s in zip(missing, scores)})
        if not queries:
            return np.zeros((0, self.verbalizer.num_labels))
        return np.stack([self._memo[(prefix, q)] for q in queries])

    @torch.inference_mode()
    def _score(self, prefix: str, queries: list[str]) -> np.ndarray:
        # special tokens (BOS) go on the prefix only, so a zero-shot prompt still gets them
        prefix_ids = self._tokenizer(prefix, add_special_tokens=True).input_ids
        query_ids = self._tokenizer(queries, add_special_tokens=False).input_ids
        word_ids = self.verbalizer.token_ids(self._tokenizer, self.label_prefix)
        cache = self._prefix_cache(prefix_ids) if self.use_cache and prefix_ids else None
        if self.mode == "first-token":
            first = torch.tensor([ids[0] for ids in word_ids])
            word_logprobs = self._read(prefix_ids, cache, query_ids, 1,
                                       lambda lp: lp[:, 0, first])
        else:
            columns = []
            for ids in word_ids:
                # the word's tokens after the query; read the log-prob of each at the position before
                rows = [q + ids[:-1] for q in query_ids]
                target = torch.tensor(ids)
                columns.append(self._read(prefix_ids, cache, rows, len(ids),
                                          lambda lp, t=target: lp[:, torch.arange(len(t)), t]
                                          .sum(1, keepdim=True)))
            word_logprobs = torch.cat(columns, dim=1)
        return self.verbalizer.class_scores(word_logprobs.double()).numpy()

    def _prefix_cache(self, prefix_ids: list[int]) -> Any:
        out = self.loaded.model(input_ids=torch.tensor([prefix_ids]), use_cache=True)
        return out.cache

    def _read(self, prefix_ids: list[int], cache: Any, rows: list[list[int]], n_last: int,
              reduce: Reduce) -> torch.Tensor:
        """Log-softmax at the last `n_last` real positions of each row, reduced by `reduce`."""
        pad = self._tokenizer.pad_token_id
        offset = len(prefix_ids)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # less padding per batch
        out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        for start in range(0, len(rows), self.batch_size):
            batch = order[start:start + self.batch_size]
            lengths = torch.tensor([len(rows[i]) for i in batch])
            width = int(lengths.max())
            body = torch.full((len(batch), width), pad, dtype=torch.long)
            for b, i in enumerate(batch):
                body[b, :len(rows[i])] = torch.tensor(rows[i])
            real = torch.arange(width)[None, :] < lengths[:, None]
            mask = torch.cat([torch.ones(len(batch), offset, dtype=torch.long), real.long()], 1)
            if cache is not None:
                batch_cache = copy.deepcopy(cache)
                batch_cache.batch_repeat_interleave(len(batch))
                input_ids, head = body, 0
                positions = (offset + torch.arange(width)).expand(len(batch), width)
            else:
                batch_cache, head = None, offset
                prefix = torch.tensor(prefix_ids, dtype=torch.long).expand(len(batch), offset)
                input_ids = torch.cat([prefix, body], dim=1)
                positions = torch.arange(offset + width).expand(len(batch), offset + width)
            # the position whose next-token distribution predicts each of the last n_last tokens
            read = head + lengths[:, None] - n_last + torch.arange(n_last)[None, :]
            keep = torch.unique(read)
            logits = self.loaded.model(input_ids=input_ids, attention_mask=mask,
                                       position_ids=positions, cache=batch_cache,
                                       use_cache=batch_cache is not None,
                                       logits_to_keep=keep).logits
            column = torch.searchsorted(keep, read)
            picked = logits[torch.arange(len(batch))[:, None], column].float()
            reduced = reduce(torch.log_softmax(picked, dim=-1))
            for b, i in enumerate(batch):
                out[i] = reduced[b]
        return torch.stack(out)
