"""Strict local data files: every user mistake is one DataError naming the file, line and field."""

import json

import pytest

from poisonlab.cli import main
from poisonlab.data import DataConfig, load_dataset
from poisonlab.errors import DataError

BOM = "\ufeff"


def jsonl(path, rows, prefix=""):
    path.write_text(prefix + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def folder(tmp_path, train, test=None, dev=None):
    """A train/dev/test folder of JSONL files from (text, label) lists."""
    root = tmp_path / "set"
    root.mkdir(exist_ok=True)
    for split, rows in (("train", train), ("dev", dev), ("test", test or [("t", 0), ("u", 1)])):
        if rows is not None:
            jsonl(root / f"{split}.jsonl", [{"text": t, "label": y} for t, y in rows])
    return root


def load_error(config: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(config)
    return str(info.value)


BINARY = [("a", 0), ("b", 1), ("c", 0)]


# 1. byte-order marks

def test_jsonl_with_byte_order_mark_is_read(tmp_path):
    root = folder(tmp_path, BINARY)
    jsonl(root / "train.jsonl", [{"text": t, "label": y} for t, y in BINARY], prefix=BOM)
    assert [e.text for e in load_dataset(DataConfig(name=str(root))).train] == ["a", "b", "c"]


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_byte_order_mark_keep_their_first_header(tmp_path, suffix, sep):
    root = folder(tmp_path, BINARY)
    (root / "train.jsonl").unlink()
    lines = [f"text{sep}label"] + [f"{t}{sep}{y}" for t, y in BINARY]
    (root / f"train{suffix}").write_text(BOM + "\n".join(lines) + "\n", encoding="utf-8")
    assert [e.label for e in load_dataset(DataConfig(name=str(root))).train] == [0, 1, 0]


# 2. duplicated CSV columns

@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_duplicated_column_names_the_file_line_1_and_column(tmp_path, suffix, sep):
    path = tmp_path / f"data{suffix}"
    path.write_text(f"text{sep}label{sep}text\nfine{sep}0{sep}other\n", encoding="utf-8")
    message = load_error(DataConfig(name=str(path)))
    assert str(path) in message and "line 1" in message and "field 'text'" in message
    assert "duplicate column" in message


# 3. labels outside the label set

def test_dev_or_test_label_outside_the_inferred_set_names_file_and_line(tmp_path):
    root = folder(tmp_path, BINARY, test=[("t", 0), ("u", 1), ("v", 7)])
    message = load_error(DataConfig(name=str(root)))
    assert str(root / "test.jsonl") in message and "line 3" in message
    assert "field 'label'" in message and "label 7 is outside the label set 0..1" in message


def test_gap_in_training_labels_is_an_error_unless_named(tmp_path):
    root = folder(tmp_path, [("a", 0), ("b", 1), ("c", 7)], test=[("t", 0)])
    message = load_error(DataConfig(name=str(root)))
    assert "labels must be 0..K-1 without gaps; found 0, 1, 7" in message
    assert "data.label_names" in message and str(root / "train.jsonl") in message
    assert "line 3" in message
    names = [str(i) for i in range(8)]
    assert load_dataset(DataConfig(name=str(root), label_names=names)).num_labels == 8


def test_explicit_label_names_error_names_file_and_line(tmp_path):
    root = folder(tmp_path, BINARY, test=[("t", 0), ("u", 2)])
    message = load_error(DataConfig(name=str(root), label_names=["neg", "pos"]))
    assert str(root / "test.jsonl") in message and "line 2" in message
    assert "field 'label'" in message and "outside the label set 0..1 (neg, pos)" in message


def test_inferred_label_set_comes_from_training_split(tmp_path):
    root = folder(tmp_path, [("a", 0), ("b", 1), ("c", 2)], test=[("t", 2)])
    assert load_dataset(DataConfig(name=str(root))).label_names == ["0", "1", "2"]


# 4. single-class training data

def test_single_class_training_split_is_an_error(tmp_path):
    root = folder(tmp_path, [("a", 0), ("b", 0)], test=[("t", 0), ("u", 1)])
    message = load_error(DataConfig(name=str(root)))
    assert "training split has a single class (label 0): nothing to learn" in message
    assert "allow_single_class" in message


def test_single_class_can_be_forced_with_a_warning(tmp_path):
    root = folder(tmp_path, [("a", 0), ("b", 0)], test=[("t", 0), ("u", 1)])
    with pytest.warns(UserWarning, match=r"training split .* single class \(label 0\)"):
        data = load_dataset(DataConfig(name=str(root), allow_single_class=True))
    assert data.num_labels == 2


# 5. Unicode digits and absurd labels

@pytest.mark.parametrize("label", ["²", "٣", "１"])
def test_non_ascii_digit_labels_are_rejected(tmp_path, label):
    root = folder(tmp_path, [("a", 0), ("b", 1), ("c", label)])
    message = load_error(DataConfig(name=str(root)))
    assert str(root / "train.jsonl") in message and "line 3" in message
    assert "field 'label'" in message and "must be an integer" in message


@pytest.mark.parametrize("label", [10**12, str(10**12), 1e12, "9" * 5000])
def test_absurdly_large_labels_are_rejected(tmp_path, label):
    root = folder(tmp_path, [("a", 0), ("b", 1), ("c", label)])
    message = load_error(DataConfig(name=str(root)))
    assert "line 3" in message and "field 'label'" in message
    assert "at most 10000 classes" in message


# 6. non-string text

@pytest.mark.parametrize("text, expected", [(5, "text must be a string, got int 5"),
                                            (True, "text must be a string, got bool True"),
                                            (None, "empty text")])
def test_non_string_text_is_named_as_such(tmp_path, text, expected):
    root = folder(tmp_path, [("a", 0), ("b", 1), (text, 0)])
    message = load_error(DataConfig(name=str(root)))
    assert "line 3" in message and "field 'text'" in message and expected in message


# 7. paths that are not data

def test_existing_path_that_is_not_a_data_file_or_folder(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n", encoding="utf-8")
    message = load_error(DataConfig(name=str(path)))
    assert str(path) in message and "neither a data file" in message and ".jsonl" in message


def test_folder_without_train_file_names_the_folder(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    jsonl(root / "test.jsonl", [{"text": "t", "label": 0}])
    message = load_error(DataConfig(name=str(root)))
    assert str(root) in message and "no train" in message


def test_cli_reports_a_bad_label_in_one_line(tmp_path, capsys):
    root = folder(tmp_path, [("a", 0), ("b", 1), ("c", "²")])
    config = tmp_path / "c.yaml"
    config.write_text(f"name: ok\ndata: {{name: {root}}}\nmodel: {{name: tiny-bert}}\n"
                      f"attack: {{name: badnet}}\ntuning: full\noutput_dir: {tmp_path / 'runs'}\n",
                      encoding="utf-8")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poisonlab: error: ") and err.count("\n") == 1, err
    assert "train.jsonl, line 3, field 'label'" in err


# seeds stay as published

def test_subsampling_seeds_are_unchanged(tmp_path):
    import random
    rows = [(f"x{i}", i % 2) for i in range(40)]
    root = folder(tmp_path, rows, test=rows, dev=rows)
    data = load_dataset(DataConfig(name=str(root), train_size=5, dev_size=5, test_size=5, seed=9))
    expected = {split: [rows[i][0] for i in sorted(random.Random(9 + k).sample(range(40), 5))]
                for k, split in enumerate(("train", "dev", "test"))}
    assert {s: [e.text for e in data.split(s)] for s in expected} == expected
    single = jsonl(tmp_path / "all.jsonl", [{"text": t, "label": y} for t, y in rows])
    shuffled = list(rows)
    random.Random(9).shuffle(shuffled)
    assert [e.text for e in load_dataset(DataConfig(name=str(single), seed=9)).train] == \
        [t for t, _ in shuffled[8:]]
