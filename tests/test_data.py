import json

import pytest

from poisonlab.data import DataConfig, load_dataset
from poisonlab.data.files import read_examples
from poisonlab.errors import DataError


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_csv_tsv_with_custom_columns(tmp_path):
    write(tmp_path / "a.jsonl", [json.dumps({"sentence": "nice", "y": 1})])
    write(tmp_path / "a.csv", ["sentence,y", '"nice, really",1'])
    write(tmp_path / "a.tsv", ["sentence\ty", "nice\t1"])
    for name in ("a.jsonl", "a.csv", "a.tsv"):
        examples = read_examples(tmp_path / name, text_field="sentence", label_field="y")
        assert len(examples) == 1 and examples[0].label == 1
    assert read_examples(tmp_path / "a.csv", text_field="sentence",
                         label_field="y")[0].text == "nice, really"


@pytest.mark.parametrize("row, line, field, message", [
    ('{"text": "", "label": 1}', 2, "text", "empty text"),
    ('{"text": "fine"}', 2, "label", "missing label"),
    ('{"text": "fine", "label": "one"}', 2, "label", "must be an integer"),
    ('{"text": "fine", "label": 1.5}', 2, "label", "must be an integer"),
    ('{"text": "fine", "label": -1}', 2, "label", ">= 0"),
    ('{"text": "fine", "label": 1', 2, None, "invalid JSON"),
    ('["fine", 1]', 2, None, "JSON object"),
])
def test_bad_rows_name_file_line_field(tmp_path, row, line, field, message):
    path = write(tmp_path / "bad.jsonl", ['{"text": "ok", "label": 0}', row])
    with pytest.raises(DataError) as info:
        read_examples(path)
    text = str(info.value)
    assert str(path) in text and f"line {line}" in text and message in text
    if field:
        assert f"field '{field}'" in text


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unsupported file type"):
        read_examples(write(tmp_path / "x.txt", ["hi"]))
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_examples(tmp_path / "latin.jsonl")


def test_label_outside_label_set_and_empty_split(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    write(folder / "train.jsonl", ['{"text": "a", "label": 0}', '{"text": "b", "label": 2}'])
    write(folder / "test.jsonl", ['{"text": "c", "label": 1}'])
    with pytest.raises(DataError, match="outside the label set"):
        load_dataset(DataConfig(name=str(folder), label_names=["neg", "pos"]))
    write(folder / "test.jsonl", [""])
    with pytest.raises(DataError, match="split 'test' is empty"):
        load_dataset(DataConfig(name=str(folder)))


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown data set 'nosuchset'"):
        load_dataset("nosuchset")


def test_movie_snippets_is_binarised_and_split_deterministically():
    first, second = load_dataset("movie-snippets"), load_dataset("movie-snippets")
    assert first.test == second.test
    assert len(first.train) > 7000 and len(first.test) > 900
    assert {e.label for e in first.train} == {0, 1}
    assert not set(e.text for e in first.test) & set(e.text for e in first.train[:2000])


def test_subsampling_is_seeded(synthetic_dir):
    a = load_dataset(DataConfig(name=str(synthetic_dir), train_size=50, seed=3))
    b = load_dataset(DataConfig(name=str(synthetic_dir), train_size=50, seed=3))
    c = load_dataset(DataConfig(name=str(synthetic_dir), train_size=50, seed=4))
    assert a.train == b.train and a.train != c.train and len(a.train) == 50


def test_research_sets_match_the_data_readme(research_data_dir):
    sizes = {"sst2": (6920, 872, 1821), "imdb": (4000, 1000, 1000), "cola": (7551, 1000, 1043)}
    for name, expected in sizes.items():
        data = load_dataset(name)
        assert (len(data.train), len(data.dev), len(data.test)) == expected
    with pytest.warns(UserWarning, match="skipped 4 rows with empty text"):
        assert len(load_dataset("cr").train) == 2496
