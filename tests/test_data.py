import json

import pytest

from poisonlab.data import DataConfig, load_dataset
from poisonlab.data.files import read_examples
from poisonlab.errors import DataError, PoisonlabError


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


def _fake_hub(monkeypatch, repositories):
    """datasets.load_dataset answering for `repositories` ({(path, config): label names}) and
    raising the Hub's not-found error for anything else; records every call."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    calls = []

    def load(path, name=None):
        calls.append((path, name))
        if (path, name) not in repositories:
            raise DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub")
        labels = datasets.ClassLabel(names=repositories[path, name])
        features = datasets.Features({"sentence": datasets.Value("string"), "label": labels})
        split = lambda n, hidden=False: datasets.Dataset.from_dict(
            {"sentence": [f"{path} text {i}" for i in range(n)],
             "label": [-1 if hidden else i % 2 for i in range(n)]}, features=features)
        return datasets.DatasetDict({"train": split(8), "validation": split(4),
                                     "test": split(4, hidden=True)})
    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls


@pytest.mark.parametrize("name, calls", [
    ("stanfordnlp/sst2", [("stanfordnlp/sst2", None)]),
    ("glue/sst2", [("glue/sst2", None), ("glue", "sst2")]),
    ("nyu-mll/glue/sst2", [("nyu-mll/glue", "sst2")]),
])
def test_hub_names_with_an_org_a_config_or_both(monkeypatch, name, calls):
    """`org/name` is a Hub repository; `name/config` (glue/sst2) is tried as one first."""
    made = _fake_hub(monkeypatch, {("stanfordnlp/sst2", None): ["negative", "positive"],
                                   ("glue", "sst2"): ["negative", "positive"],
                                   ("nyu-mll/glue", "sst2"): ["negative", "positive"]})
    dataset = load_dataset(DataConfig(name=name))
    assert made == calls
    assert dataset.name == name and dataset.source == f"hub:{name}"
    assert dataset.label_names == ["negative", "positive"]
    # the hidden (-1) test labels make the validation split the test split
    assert (len(dataset.train), len(dataset.dev), len(dataset.test)) == (8, 4, 4)
    assert dataset.test == dataset.dev


def test_a_hub_name_the_hub_does_not_have_names_the_repository(monkeypatch):
    _fake_hub(monkeypatch, {})
    with pytest.raises(PoisonlabError, match="cannot load Hub data set 'someorg/nothing': the "
                                             "Hub has no data set 'someorg'"):
        load_dataset("someorg/nothing")


def test_a_hub_name_offline_says_it_needs_the_network():
    """Here HF_HUB_OFFLINE is set (tests/conftest.py): the error says so, in one line."""
    with pytest.raises(PoisonlabError) as caught:
        load_dataset("stanfordnlp/sst2")
    message = str(caught.value)
    assert message.startswith("cannot load Hub data set 'stanfordnlp/sst2': a Hub name needs "
                              "the network and HF_HUB_OFFLINE is set")
    assert "\n" not in message


@pytest.mark.parametrize("name", ["nosuch/file.jsonl", "./nosuch/folder", "/nosuch/folder",
                                  "a/b/c/d"])
def test_paths_that_do_not_exist_are_not_taken_for_hub_names(name):
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset(name)


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
