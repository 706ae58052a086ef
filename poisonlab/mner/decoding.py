"""Turn the four queries' head outputs into one set of entity spans per tweet.

Rules, applied in this order:
1. Candidates: a span (i, j) of type T is a candidate when P(start=i), P(end=j) and P(match i..j)
   all exceed `threshold`, i <= j, j - i < max_span_words, and both words exist.
2. Existence gate: when `existence_threshold` is set, a type whose P(exists) is below it yields no
   spans (the existence head sees the whole tweet and the image).
3. Score: the mean of the three probabilities.
4. Overlaps (within one type and across types): spans are taken greedily by score, highest first;
   a span overlapping an already taken one is dropped. Twitter NER is flat, so one word carries at
   most one entity.
5. Ties: equal scores are broken by type order (the config's order), then by earlier start, then by
   shorter span, so decoding is deterministic."""

from __future__ import annotations

import torch

from poisonlab.mner.spans import Span


def candidate_spans(start: torch.Tensor, end: torch.Tensor, match: torch.Tensor,
                    exists: torch.Tensor, word_mask: torch.Tensor, threshold: float,
                    existence_threshold: float | None) -> list[list[tuple[int, int, int, float]]]:
    """Rules 1-3 on probabilities of R rows (row = tweet * n_types + type); returns per row a
    list of (start, end, row, score)."""
    rows, n, span = match.shape
    ends = end * word_mask
    padded = torch.nn.functional.pad(ends, (0, span - 1))
    shifted = torch.stack([padded[:, s:s + n] for s in range(span)], dim=2)
    ok = ((start * word_mask) > threshold).unsqueeze(2) & (shifted > threshold) & (match > threshold)
    if existence_threshold is not None:
        ok &= (exists >= existence_threshold)[:, None, None]
    score = (start.unsqueeze(2) + shifted + match) / 3
    found: list[list[tuple[int, int, int, float]]] = [[] for _ in range(rows)]
    for r, i, s in ok.nonzero().tolist():
        found[r].append((i, i + s, r, float(score[r, i, s])))
    return found


def resolve(candidates: list[tuple[int, int, str, float]], type_order: list[str]) -> list[Span]:
    """Rules 4-5: greedy by score over (start, end, type, score) candidates of one tweet."""
    rank = {t: k for k, t in enumerate(type_order)}
    ordered = sorted(candidates, key=lambda c: (-c[3], rank[c[2]], c[0], c[1] - c[0]))
    taken: list[Span] = []
    for start, end, kind, _ in ordered:
        if all(end < t.start or start > t.end for t in taken):
            taken.append(Span(start, end, kind))
    return sorted(taken)


def decode(start: torch.Tensor, end: torch.Tensor, match: torch.Tensor, exists: torch.Tensor,
           word_mask: torch.Tensor, types: list[str], threshold: float = 0.5,
           existence_threshold: float | None = 0.5) -> list[list[Span]]:
    """Spans of each tweet from probabilities of its len(types) rows."""
    per_row = candidate_spans(start, end, match, exists, word_mask.float(), threshold,
                              existence_threshold)
    k = len(types)
    tweets = []
    for b in range(len(per_row) // k):
        found = [(i, j, types[r % k], score) for rows in per_row[b * k:(b + 1) * k]
                 for i, j, r, score in rows]
        tweets.append(resolve(found, types))
    return tweets
