"""MNER data layer: CoNLL round trip, the orphan I-X rule, the real Twitter-2015 gold count,
images with placeholders, box JSONL, the synthetic generator."""

import os
from pathlib import Path

import pytest
import torch

from poisonlab.errors import DataError
from poisonlab.mner.boxes import BoxRecord, read_boxes, write_boxes
from poisonlab.mner.conll import Tweet, format_conll, read_conll, write_conll
from poisonlab.mner.images import ImageWarning, load_image
from poisonlab.mner.spans import Span, spans_to_tags, tags_to_spans
from poisonlab.mner.synthetic import generate


def test_conll_round_trip(tmp_path):
    tweets = [Tweet("1", ["RT", "Paris", "Hilton", "!"], ["O", "B-PER", "I-PER", "O"]),
              Tweet("O_2", ["New", "York"], ["B-LOC", "I-LOC"])]
    write_conll(tmp_path / "a.txt", tweets)
    again = read_conll(tmp_path / "a.txt")
    assert again == tweets
    assert format_conll(again) == (tmp_path / "a.txt").read_text()


def test_bad_tag_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("IMGID:1\nhello\tO\nworld\tX-PER\n")
    with pytest.raises(DataError, match=r"bad.txt, line 3, field 'tag'"):
        read_conll(path)


def test_orphan_inside_tag_starts_a_new_entity():
    tags = ["O", "I-PER", "I-PER", "I-LOC", "B-ORG", "I-ORG", "O", "I-OTHER"]
    assert tags_to_spans(tags) == [Span(1, 2, "PER"), Span(3, 3, "LOC"), Span(4, 5, "ORG"),
                                   Span(7, 7, "OTHER")]
    assert tags_to_spans(spans_to_tags(tags_to_spans(tags), len(tags))) == tags_to_spans(tags)


def _twitter_dir() -> Path | None:
    root = os.environ.get("POISONLAB_DATA_DIR")
    path = Path(root) / "twitter" / "2015" if root else None
    return path if path is not None and (path / "test.txt").is_file() else None


@pytest.mark.integration
@pytest.mark.skipif(_twitter_dir() is None, reason="shared Twitter-2015 data not available")
def test_twitter2015_test_has_5207_gold_entities():
    tweets = read_conll(_twitter_dir() / "test.txt")
    assert len(tweets) == 3257
    assert sum(len(t.spans) for t in tweets) == 5207


def test_missing_and_corrupt_images_become_placeholders(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.warns(ImageWarning, match="not found"):
        pixels, size = load_image(tmp_path, "absent", 32)
    assert size is None and pixels.shape == (3, 32, 32)
    with pytest.warns(ImageWarning, match="unreadable"):
        pixels, size = load_image(tmp_path, "bad", 32)
    assert size is None and torch.equal(pixels, torch.full((3, 32, 32), 128, dtype=torch.uint8))


def test_box_jsonl_round_trip_and_validation(tmp_path):
    records = [BoxRecord("1", "PER", [[1.0, 2.0, 30.0, 40.0]], "manual"),
               BoxRecord("1", "LOC", [[0.0, 0.0, 5.0, 5.0], [6.0, 6.0, 9.0, 9.0]], "weak")]
    write_boxes(tmp_path / "b.jsonl", records)
    assert list(read_boxes(tmp_path / "b.jsonl").values()) == records
    (tmp_path / "bad.jsonl").write_text('{"img_id": "1", "type": "PER", "boxes": [[5, 5, 1, 1]], '
                                        '"source": "manual"}\n')
    with pytest.raises(DataError, match="line 1, field 'boxes'"):
        read_boxes(tmp_path / "bad.jsonl")


def test_synthetic_set_is_deterministic_and_complete(tmp_path):
    a = generate(tmp_path / "a", 12, 3, 3, seed=5)
    b = generate(tmp_path / "b", 12, 3, 3, seed=5)
    for name in ("train.txt", "valid.txt", "test.txt", "boxes.jsonl", "images/train_00005.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert not (a / "images" / "train_00001.png").exists()  # the missing image
    with pytest.warns(ImageWarning):
        _, size = load_image(a / "images", "train_00002", 32)  # the corrupt image
    assert size is None
    boxes = read_boxes(a / "boxes.jsonl")
    assert {r.source for r in boxes.values()} == {"manual", "weak"}
    assert all(kind != "OTHER" for _, kind in boxes)
