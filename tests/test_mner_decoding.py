"""One hand-made case per decoding rule (poisonlab/mner/decoding.py) and the scorer."""

import torch

from poisonlab.mner.decoding import decode, resolve
from poisonlab.mner.scorer import entity_scores, grounding_accuracy
from poisonlab.mner.spans import Span

TYPES = ["LOC", "PER"]


def _probs(words=4, span=3):
    rows = len(TYPES)
    return (torch.zeros(rows, words), torch.zeros(rows, words), torch.zeros(rows, words, span),
            torch.ones(rows), torch.ones(rows, words, dtype=torch.bool))


def test_rule1_candidate_needs_start_end_and_match():
    start, end, match, exists, mask = _probs()
    start[1, 0] = end[1, 1] = 0.9
    assert decode(start, end, match, exists, mask, TYPES) == [[]]  # no match probability
    match[1, 0, 1] = 0.9
    assert decode(start, end, match, exists, mask, TYPES) == [[Span(0, 1, "PER")]]
    mask[1, 1] = False  # the end word was truncated away
    assert decode(start, end, match, exists, mask, TYPES) == [[]]


def test_rule1_spans_longer_than_max_span_words_are_not_candidates():
    start, end, match, exists, mask = _probs(words=6, span=3)
    start[0, 0] = end[0, 4] = 0.9
    match[0, 0, :] = 0.9
    assert decode(start, end, match, exists, mask, TYPES) == [[]]


def test_rule2_existence_gate():
    start, end, match, exists, mask = _probs()
    start[0, 2] = end[0, 2] = match[0, 2, 0] = 0.9
    exists[0] = 0.2
    assert decode(start, end, match, exists, mask, TYPES) == [[]]
    assert decode(start, end, match, exists, mask, TYPES, existence_threshold=None) == [
        [Span(2, 2, "LOC")]]


def test_rule4_same_type_overlap_keeps_the_higher_score():
    start, end, match, exists, mask = _probs()
    start[1, 0] = end[1, 1] = end[1, 2] = 0.9
    match[1, 0, 1] = 0.6   # (0, 1)
    match[1, 0, 2] = 0.95  # (0, 2): higher score, overlaps (0, 1)
    assert decode(start, end, match, exists, mask, TYPES) == [[Span(0, 2, "PER")]]


def test_rule4_cross_type_overlap_keeps_the_higher_score():
    start, end, match, exists, mask = _probs()
    start[0, 1] = end[0, 1] = match[0, 1, 0] = 0.7   # LOC (1, 1)
    start[1, 1] = end[1, 2] = match[1, 1, 1] = 0.9   # PER (1, 2) wins
    start[0, 3] = end[0, 3] = match[0, 3, 0] = 0.6   # LOC (3, 3) does not overlap: kept
    assert decode(start, end, match, exists, mask, TYPES) == [[Span(1, 2, "PER"),
                                                                Span(3, 3, "LOC")]]


def test_rule5_ties_break_by_type_order_then_start_then_length():
    assert resolve([(0, 0, "PER", 0.8), (0, 0, "LOC", 0.8)], TYPES) == [Span(0, 0, "LOC")]
    assert resolve([(1, 2, "LOC", 0.8), (0, 1, "LOC", 0.8)], TYPES) == [Span(0, 1, "LOC")]
    assert resolve([(0, 2, "LOC", 0.8), (0, 1, "LOC", 0.8)], TYPES) == [Span(0, 1, "LOC")]


def test_rows_are_tweet_major():
    start, end, match, exists, mask = (torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2, 2),
                                       torch.ones(4), torch.ones(4, 2, dtype=torch.bool))
    start[3, 0] = end[3, 0] = match[3, 0, 0] = 0.9  # tweet 1, PER
    assert decode(start, end, match, exists, mask, TYPES) == [[], [Span(0, 0, "PER")]]


def test_entity_scores_per_type_and_micro():
    gold = [[Span(0, 1, "PER"), Span(3, 3, "LOC")], [Span(0, 0, "LOC")]]
    pred = [[Span(0, 1, "PER"), Span(3, 3, "PER")], [Span(0, 0, "LOC")]]
    scores = entity_scores(gold, pred)
    assert scores["micro"]["precision"] == 2 / 3 and scores["micro"]["recall"] == 2 / 3
    assert scores["LOC"]["recall"] == 0.5 and scores["LOC"]["precision"] == 1.0
    assert scores["PER"]["precision"] == 0.5 and scores["PER"]["support"] == 1


def test_grounding_accuracy_counts_iou_above_half():
    gold = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    pred = [torch.tensor([0.0, 0.0, 10.0, 8.0]), torch.tensor([5.0, 5.0, 15.0, 15.0])]
    assert grounding_accuracy(pred, gold) == {"accuracy": 0.5, "queries": 2}
