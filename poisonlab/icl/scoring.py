"""Label scoring from a causal LM's next-token distribution, with the demonstration prefix encoded
once and its key/value cache reused for every query.

Cached path: the prefix runs once (only its last position goes through the LM head: the cache is
what it is run for); each batch of queries attends to that cache, shared read-only: every layer's
keys and values are expanded along the batch dimension as views, never copied, and the model's
cache update concatenates the queries' own keys after them (the prefix cache itself is never
written). Queries are right-padded, positions continue after the prefix, and each score is read at
the query's own last real token, so padding never reaches a real token. Plain path
(`use_cache=False`): prefix and query are re-encoded together for every query; it exists to check
the cached path and as the benchmark's baseline. Both see the same token ids.

Tokenization: a prefix is a sequence of pieces (one per demonstration) and so is a query (the
template's words and the text). `whole` encodes the prefix as one string and each query as one
string; `per-piece` encodes every piece on its own and concatenates the ids; `query-pieces` encodes
the prefix as one string and each query piece on its own (OpenPrompt's wrapper on the ICLAttack
scripts, whose demonstrations are one literal piece of the template). The prefix and the query
are always encoded apart, so under `whole` the separator before the query can tokenize differently
from the same separator between demonstrations (SmolLM2: "\n\n" is one token before the query and
two between demonstrations). Special tokens such as BOS go on the first prefix piece only.

Every tensor is created on the model's device (`model_device`); only the class scores come back
to the host."""

from __future__ import annotations

import copy
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from poisonlab.icl.verbalizer import ScoringMode, Verbalizer
from poisonlab.models import LoadedModel
from poisonlab.runtime import model_device

Reduce = Callable[[torch.Tensor], torch.Tensor]  # [B, n_last, vocab] log-probs -> [B, X]
Tokenization = Literal["whole", "per-piece", "query-pieces"]
Pieces = tuple[str, ...]
Prompt = str | Sequence[str]  # a string is one piece


def shared_prefix_cache(cache: Any, batch: int) -> Any:
    """`cache` (batch 1) seen by `batch` rows without copying it: each layer's keys and values
    are expanded views. The model's cache update reassigns them (concatenating the new tokens), so
    the prefix is never written. Layer kinds whose update might write in place get the copy the
    model's own `batch_repeat_interleave` makes."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
    if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers):
        repeated = copy.deepcopy(cache)
        repeated.batch_repeat_interleave(batch)
        return repeated
    shared = copy.copy(cache)
    shared.layers = []
    for layer in cache.layers:
        view = copy.copy(layer)
        if layer.is_initialized and layer.keys.numel():
            view.keys = layer.keys.expand(batch, -1, -1, -1)
            view.values = layer.values.expand(batch, -1, -1, -1)
        shared.layers.append(view)
    return shared


def _units(prompt: Prompt, split: bool) -> Pieces:
    pieces = (prompt,) if isinstance(prompt, str) else tuple(prompt)
    return pieces if split else ("".join(pieces),)


class LabelScorer:
    """Class log-scores (the verbalizer's aggregation of label-word log-probabilities) for
    queries after a shared prefix, the prompt encoded as `tokenization` says.

    Results are memoised per (prefix, query), so a study that re-scores the same clean context or
    the same queries under another attack cell pays once."""

    def __init__(self, loaded: LoadedModel, verbalizer: Verbalizer, label_prefix: str = " ",
                 mode: ScoringMode = "first-token", batch_size: int = 16, use_cache: bool = True,
                 progress: bool = False, tokenization: Tokenization = "whole"):
        self.loaded = loaded
        self.progress = progress  # a bar per scoring pass (a pass over many queries takes minutes)
        self.verbalizer = verbalizer
        self.label_prefix = label_prefix
        self.mode = mode
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.tokenization = tokenization
        self._memo: dict[tuple[Pieces, Pieces], np.ndarray] = {}

    @property
    def _tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def score(self, prefix: Prompt, queries: Sequence[Prompt]) -> np.ndarray:
        """[len(queries), classes] class log-scores (not normalised over classes). A prompt is a
        string or its pieces (see the module doc for how `tokenization` encodes them)."""
        context = self.prefix_units(prefix)
        asked = [self.query_units(q) for q in queries]
        missing = list(dict.fromkeys(q for q in asked if (context, q) not in self._memo))
        if missing:
            scores = self._score(context, missing)
            self._memo.update({(context, q): s for q, s in zip(missing, scores)})
        if not asked:
            return np.zeros((0, self.verbalizer.num_labels))
        return np.stack([self._memo[(context, q)] for q in asked])

    def prefix_units(self, prefix: Prompt) -> Pieces:
        """What of a prefix is encoded on its own: each piece (per-piece), else the whole."""
        return _units(prefix, self.tokenization == "per-piece")

    def query_units(self, query: Prompt) -> Pieces:
        """What of a query is encoded on its own: each piece, except under whole."""
        return _units(query, self.tokenization != "whole")

    def encode_prefix(self, units: Pieces) -> list[int]:
        """Ids of a prefix: each unit encoded on its own, special tokens (BOS) on the first, so a
        zero-shot prompt still gets them."""
        first, *rest = units or ("",)
        ids = list(self._tokenizer(first, add_special_tokens=True).input_ids)
        return ids + [i for row in self.encode_queries([tuple(rest)]) for i in row]

    def encode_queries(self, queries: list[Pieces]) -> list[list[int]]:
        """Ids of each query: its units encoded on their own (one batched call) and joined."""
        flat = [piece for units in queries for piece in units]
        encoded = self._tokenizer(flat, add_special_tokens=False).input_ids if flat else []
        rows, start = [], 0
        for units in queries:
            rows.append([i for ids in encoded[start:start + len(units)] for i in ids])
            start += len(units)
        return rows

    @torch.inference_mode()
    def _score(self, prefix: Pieces, queries: list[Pieces]) -> np.ndarray:
        device = model_device(self.loaded.model)
        prefix_ids = self.encode_prefix(prefix)
        query_ids = self.encode_queries(queries)
        word_ids = self.verbalizer.token_ids(self._tokenizer, self.label_prefix)
        cache = self._prefix_cache(prefix_ids, device) if self.use_cache and prefix_ids else None
        if self.mode == "first-token":
            first = torch.tensor([ids[0] for ids in word_ids], device=device)
            word_logprobs = self._read(prefix_ids, cache, query_ids, 1,
                                       lambda lp: lp[:, 0, first], device)
        else:
            columns = []
            for ids in word_ids:
                # the word's tokens after the query; read the log-prob of each at the position before
                rows = [q + ids[:-1] for q in query_ids]
                target = torch.tensor(ids, device=device)
                steps = torch.arange(len(ids), device=device)
                columns.append(self._read(prefix_ids, cache, rows, len(ids),
                                          lambda lp, t=target, s=steps: lp[:, s, t]
                                          .sum(1, keepdim=True), device))
            word_logprobs = torch.cat(columns, dim=1)
        # to the host before float64, which not every accelerator has (MPS)
        return self.verbalizer.class_scores(word_logprobs.cpu().double()).numpy()

    def _prefix_cache(self, prefix_ids: list[int], device: torch.device) -> Any:
        # only the cache is wanted: the LM head runs on the last position alone
        out = self.loaded.model(input_ids=torch.tensor([prefix_ids], device=device),
                                use_cache=True, logits_to_keep=1)
        return out.cache

    def _read(self, prefix_ids: list[int], cache: Any, rows: list[list[int]], n_last: int,
              reduce: Reduce, device: torch.device) -> torch.Tensor:
        """Log-softmax at the last `n_last` real positions of each row, reduced by `reduce`."""
        pad = self._tokenizer.pad_token_id
        offset = len(prefix_ids)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # less padding per batch
        out: list[torch.Tensor] = []
        for start in tqdm(range(0, len(rows), self.batch_size), desc="icl scoring", unit="batch",
                          disable=not self.progress, leave=False):
            batch = order[start:start + self.batch_size]
            width = max(len(rows[i]) for i in batch)
            body = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in batch],
                                dtype=torch.long, device=device)
            lengths = torch.tensor([len(rows[i]) for i in batch], device=device)
            real = torch.arange(width, device=device)[None, :] < lengths[:, None]
            mask = torch.cat([torch.ones(len(batch), offset, dtype=torch.long, device=device),
                              real.long()], 1)
            if cache is not None:
                batch_cache, head = shared_prefix_cache(cache, len(batch)), 0
                input_ids = body
                positions = (offset + torch.arange(width, device=device)).expand(len(batch), width)
            else:
                batch_cache, head = None, offset
                prefix = torch.tensor(prefix_ids, dtype=torch.long, device=device).expand(
                    len(batch), offset)
                input_ids = torch.cat([prefix, body], dim=1)
                positions = torch.arange(offset + width, device=device).expand(
                    len(batch), offset + width)
            # the position whose next-token distribution predicts each of the last n_last tokens
            read = head + lengths[:, None] - n_last + torch.arange(n_last, device=device)[None, :]
            keep = torch.unique(read)
            logits = self.loaded.model(input_ids=input_ids, attention_mask=mask,
                                       position_ids=positions, cache=batch_cache,
                                       use_cache=batch_cache is not None,
                                       logits_to_keep=keep).logits
            column = torch.searchsorted(keep, read)
            picked = logits[torch.arange(len(batch), device=device)[:, None], column].float()
            out.append(reduce(torch.log_softmax(picked, dim=-1)))
        # back to the input order in one gather
        inverse = torch.empty(len(rows), dtype=torch.long, device=device)
        inverse[torch.tensor(order, device=device)] = torch.arange(len(rows), device=device)
        return torch.cat(out)[inverse]
