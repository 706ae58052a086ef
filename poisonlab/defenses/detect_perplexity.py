"""Leave-one-word-out perplexity under a causal LM: ONION's word suspicion scores, batched.

For a text of n words, ONION needs the perplexity of the text and of the n texts with one word
removed. The variant without word i shares its token prefix with the full text up to that word,
so the full text runs once with its key/value cache kept and each variant only runs its suffix,
attending to the cached prefix. Variants of many texts go into one forward pass: each row gets
its own text's cache, right-padded, with the padding masked out. Texts are bucketed by length, and
every suffix pass holds rows of nearly equal length (padding under `MAX_PADDING` of its tokens).
`naive_suspicion` is the one-forward-per-variant reference the tests and the benchmark compare to.

A variant's tokens up to the deleted word are the full text's, so their NLL is a prefix sum of the
full text's, and so is the first token after the deletion point: it is predicted by the full
text's hidden state at the last shared token. The suffix pass runs only the tokens after that, so
a variant that differs from the full text in one token (or that is a prefix of it) runs nothing.

Sequences start with the LM's BOS token (EOS where it has none) so every word is predicted; texts
are truncated to `max_length` tokens. Every tensor is created on the LM's device
(`model_device`); the per-token NLLs come back to the host once per bucket. Not a registered
component (ONION in onion.py uses it)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from poisonlab.models import LoadedModel
from poisonlab.runtime import model_device

# the share of padding a suffix pass may run, over its real tokens (sorted rows of nearly equal
# length; without the cap one pass spanned many lengths and a third of its tokens were padding)
MAX_PADDING = 0.1


def leave_one_out(words: Sequence[str]) -> list[str]:
    return [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LeaveOneOutPerplexity:
    """Word suspicion = perplexity(text) - perplexity(text without the word), memoised per text
    (the scores depend only on the text, so a detector's `score` and `purify` of the same texts
    run the LM once, and detectors that share this scorer through a `ModelCache` share the work
    on a common test set). The memo belongs to this object: it is dropped with it."""

    def __init__(self, lm: LoadedModel, *, max_length: int = 128, batch_tokens: int = 4096,
                 progress: bool = False):
        self.lm = lm
        self.progress = progress  # a bar over the texts scored (ONION's slowest step)
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        tokenizer = lm.tokenizer
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else (
            tokenizer.eos_token_id)
        self.start_id = int(start if start is not None else 0)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self.lm.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        return [[self.start_id] + seq[:self.max_length - 1] for seq in ids]

    def suspicion(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, one suspicion score per whitespace word (0 for a one-word text)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            self._score(todo)
        return [self._memo[t] for t in texts]

    @torch.inference_mode()
    def _score(self, texts: list[str]) -> None:
        model = self.lm.model.eval()
        full_ids = self.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(full_ids[i]))
        start = 0
        bar = tqdm(total=len(texts), desc="onion", unit="text", disable=not self.progress,
                   leave=False)
        while start < len(order):
            width = len(full_ids[order[start]])
            end = start + 1
            # a bucket: texts of similar length, up to batch_tokens padded tokens
            while end < len(order) and (end - start + 1) * len(full_ids[order[end]]) <= max(
                    self.batch_tokens, width):
                end += 1
            self._score_bucket(model, [texts[i] for i in order[start:end]],
                               [full_ids[i] for i in order[start:end]])
            bar.update(end - start)
            start = end
        bar.close()

    def _score_bucket(self, model: torch.nn.Module, texts: list[str],
                      full_ids: list[list[int]]) -> None:
        device = model_device(model)
        batch = _right_padded(full_ids, self.pad_id, device)
        out = model.base_model(**batch, use_cache=True)
        hidden = out.last_hidden_state
        # NLL of token t+1 given tokens <= t, per row (0 at padding); read on the host
        token_nll = _target_nll(model, hidden[:, :-1], batch["input_ids"][:, 1:],
                                batch["attention_mask"][:, 1:].bool()).cpu()  # [B, L-1]
        keys = [layer.keys for layer in out.cache.layers]
        values = [layer.values for layer in out.cache.layers]
        full_nll = [float(token_nll[b, :len(ids) - 1].sum()) for b, ids in enumerate(full_ids)]
        prefix_sums = torch.cat([token_nll.new_zeros(len(texts), 1), token_nll.cumsum(1)], dim=1)

        # every variant: (text row, cached prefix length, suffix inputs, suffix targets,
        # NLL of the tokens the full text already predicted)
        word_lists = [t.split() for t in texts]
        variant_texts = [v for words in word_lists if len(words) > 1 for v in leave_one_out(words)]
        variant_ids = iter(self.encode(variant_texts))
        variants: list[tuple[int, int, list[int], list[int], float]] = []
        owners: list[tuple[int, int]] = []
        # the first token after the shared prefix, predicted by the full text's hidden state
        first_new: list[tuple[int, int, int, int]] = []  # (variant, row, position, target)
        for row, words in enumerate(word_lists):
            if len(words) <= 1:
                continue
            for word in range(len(words)):
                ids = next(variant_ids)
                shared = _common_prefix(ids, full_ids[row])  # >= 1: the start token
                if shared < len(ids):
                    first_new.append((len(variants), row, shared - 1, ids[shared]))
                # the suffix starts after the first new token, attending to the shared prefix
                variants.append((row, shared, ids[shared:-1], ids[shared + 1:],
                                 float(prefix_sums[row, shared - 1])))
                owners.append((row, len(ids) - 1))
        nll = [v[4] for v in variants]
        if first_new:
            at = torch.tensor([(r, p) for _, r, p, _ in first_new], device=device)
            targets = torch.tensor([t for *_, t in first_new], device=device)
            picked = hidden[at[:, 0], at[:, 1]][:, None]
            first = _target_nll(model, picked, targets[:, None],
                                torch.ones_like(targets[:, None], dtype=torch.bool))
            for (k, *_), value in zip(first_new, first[:, 0].tolist()):
                nll[k] += value
        # variants with a suffix to run, by suffix length, in passes of nearly equal lengths
        index = sorted((k for k, v in enumerate(variants) if v[2]),
                       key=lambda k: (len(variants[k][2]), variants[k][1]))
        run = [variants[k] for k in index]
        for start, end in _chunks([len(v[2]) for v in run], [v[1] for v in run],
                                  self.batch_tokens):
            suffix = self._suffix_nll(model, run[start:end], keys, values, device)
            for k, value in zip(index[start:end], suffix):
                nll[k] += value

        scores: list[list[float]] = [[] for _ in texts]
        for (row, predicted), value in zip(owners, nll):
            scores[row].append(np.exp(full_nll[row] / max(len(full_ids[row]) - 1, 1))
                               - np.exp(value / predicted))
        for row, text in enumerate(texts):
            self._memo[text] = np.asarray(scores[row] if len(word_lists[row]) > 1 else
                                          [0.0] * len(word_lists[row]), dtype=np.float64)

    def _suffix_nll(self, model: torch.nn.Module,
                    chunk: list[tuple[int, int, list[int], list[int], float]],
                    keys: list[torch.Tensor], values: list[torch.Tensor],
                    device: torch.device) -> list[float]:
        """Summed NLL of each variant's suffix, attending to its own text's cached prefix."""
        from transformers import DynamicCache
        rows = torch.tensor([v[0] for v in chunk], device=device)
        prefix_len = torch.tensor([v[1] for v in chunk], device=device)
        suffix_len = torch.tensor([len(v[2]) for v in chunk], device=device)
        width_prefix = max(v[1] for v in chunk)
        width_suffix = max(len(v[2]) for v in chunk)
        # slice before selecting rows: only the prefix that is attended to is copied
        cache = DynamicCache(ddp_cache_data=[
            (k[:, :, :width_prefix].index_select(0, rows),
             v[:, :, :width_prefix].index_select(0, rows)) for k, v in zip(keys, values)])
        batch = _right_padded([v[2] for v in chunk], self.pad_id, device)
        prefix_mask = (torch.arange(width_prefix, device=device) < prefix_len[:, None]).long()
        mask = torch.cat([prefix_mask, batch["attention_mask"]], dim=1)
        positions = prefix_len[:, None] + torch.arange(width_suffix, device=device)
        # the causal mask counts query positions from the cache length (width_prefix), so the
        # padded holes only need masking; position_ids carry each row's true positions (RoPE)
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=mask,
                                  position_ids=positions, cache=cache,
                                  use_cache=True).last_hidden_state
        target_ids = _right_padded([v[3] for v in chunk], self.pad_id, device)["input_ids"]
        valid = torch.arange(width_suffix, device=device) < suffix_len[:, None]
        return _target_nll(model, hidden, target_ids, valid).sum(1).tolist()


def _chunks(suffix: Sequence[int], prefix: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """[start, end) runs of rows sorted by suffix length, one forward pass each: at most `budget`
    tokens counting every row's (padded) prefix, and suffix padding under MAX_PADDING of the real
    suffix tokens, so the passes do little work on padding while staying large."""
    runs, start = [], 0
    while start < len(suffix):
        end, real, widest_prefix = start + 1, suffix[start], prefix[start]
        while end < len(suffix):
            rows, width = end - start + 1, suffix[end]  # the widest so far: sorted
            widest_prefix = max(widest_prefix, prefix[end])
            if rows * (width + widest_prefix) > budget or \
                    rows * width > (1 + MAX_PADDING) * (real + width):
                break
            real += width
            end += 1
        runs.append((start, end))
        start = end
    return runs


def _right_padded(ids: Sequence[Sequence[int]], pad_id: int,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask of right-padded rows, built on `device`."""
    width = max(len(seq) for seq in ids)
    return {"input_ids": torch.tensor([list(seq) + [pad_id] * (width - len(seq)) for seq in ids],
                                      dtype=torch.long, device=device),
            "attention_mask": torch.tensor([[1] * len(seq) + [0] * (width - len(seq))
                                            for seq in ids], dtype=torch.long, device=device)}


def _target_nll(model: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
    """NLL of each valid target (0 elsewhere). The LM head runs on valid positions only and
    cross_entropy never materialises the log-softmax over the vocabulary: with a 49k-token
    vocabulary these two dominate the memory traffic of a short-sequence forward."""
    nll = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    logits = model.get_output_embeddings()(hidden[valid]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma 2 style heads
    if cap:
        logits = torch.tanh(logits / cap) * cap
    nll[valid] = torch.nn.functional.cross_entropy(logits, targets[valid], reduction="none")
    return nll


def _token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """NLL of token t+1 given tokens <= t, per row (padding positions hold garbage)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def naive_suspicion(scorer: LeaveOneOutPerplexity, texts: Sequence[str]) -> list[np.ndarray]:
    """The reference computation: one forward pass (batch size 1) per text and per variant."""
    model = scorer.lm.model.eval()
    device = model_device(model)

    def perplexity(ids: list[int]) -> float:
        input_ids = torch.tensor([ids], device=device)
        nll = _token_nll(model(input_ids=input_ids).logits, input_ids)
        return float(torch.exp(nll.mean()))

    out = []
    for text in texts:
        words = text.split()
        if len(words) <= 1:
            out.append(np.zeros(len(words)))
            continue
        base = perplexity(scorer.encode([text])[0])
        out.append(np.asarray([base - perplexity(ids)
                               for ids in scorer.encode(leave_one_out(words))]))
    return out

