"""`poisonlab data show` and `poisonlab data prepare` (the Hub is replaced by a stub: tests run
offline)."""

import json

import pytest

from poisonlab.cli import main
from poisonlab.data import DatasetSplits, Example, load_dataset
from poisonlab.data import prepare as prepare_module
from poisonlab.settings import set_data_dir


@pytest.fixture(autouse=True)
def _no_data_dir_left_behind():
    yield
    set_data_dir(None)


def show(capsys, *args):
    code = main(["data", "show", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_a_local_folder_and_a_builtin_set(synthetic_dir, capsys):
    code, out, _ = show(capsys, synthetic_dir, "--rows", "2")
    assert code == 0
    assert "labels: 0 0, 1 1" in out
    assert "train: 400 rows (per label: 0: 200, 1: 200)" in out
    assert "dev: 120 rows" in out and "test: 120 rows" in out
    assert len([line for line in out.splitlines() if line.startswith("  [")]) == 2
    code, out, _ = show(capsys, "movie-snippets")
    assert code == 0 and "labels: 0 negative, 1 positive" in out


def test_show_a_single_file_split_80_10_10(tmp_path, capsys):
    rows = [{"text": f"sentence {i}", "label": i % 2} for i in range(100)]
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, _ = show(capsys, path)
    assert code == 0
    assert "train: 80 rows" in out and "dev: 10 rows" in out and "test: 10 rows" in out


def test_show_a_research_set_of_the_data_directory(tmp_path, synthetic_dir, capsys):
    (tmp_path / "data").mkdir()
    synthetic_dir.rename(tmp_path / "data" / "cr")
    code, out, _ = show(capsys, "cr", "--data-dir", tmp_path / "data")
    assert code == 0 and "labels: 0 negative, 1 positive" in out and "train: 400 rows" in out


def test_show_an_unknown_name_is_one_line(capsys):
    code, out, err = show(capsys, "no-such-set")
    assert code == 2 and out == "" and err.count("\n") == 1 and "no-such-set" in err


def _hub_stub(splits: dict[str, list[Example]], test_is_dev: bool = False):
    def hub_splits(path, subset, *, name):
        dev = splits["dev"]
        return DatasetSplits(name, ["0", "1"], train=splits["train"], dev=dev,
                             test=dev if test_is_dev else splits["test"])
    return hub_splits


def _examples(n, offset=0):
    return [Example(f"text {offset + i}", i % 2) for i in range(n)]


def test_prepare_writes_the_data_directory_layout(tmp_path, monkeypatch, capsys):
    # SST-2 on the Hub hides its test labels: validation becomes test, dev is carved from train
    monkeypatch.setattr(prepare_module, "hub_splits", _hub_stub(
        {"train": _examples(200), "dev": _examples(30, 1000), "test": []}, test_is_dev=True))
    assert main(["data", "prepare", "sst2", "--data-dir", str(tmp_path)]) == 0
    assert f"prepared: {tmp_path / 'sst2'}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2"]  # no partial folder left
    dataset = load_dataset("sst2")
    assert (len(dataset.train), len(dataset.dev), len(dataset.test)) == (180, 20, 30)
    assert {e.text for e in dataset.train}.isdisjoint(e.text for e in dataset.dev)
    assert dataset.label_names == ["negative", "positive"]
    again = tmp_path / "again"
    again.mkdir()
    assert main(["data", "prepare", "sst2", "--data-dir", str(again)]) == 0
    same_dev = (again / "sst2" / "dev.jsonl").read_text()
    assert same_dev == (tmp_path / "sst2" / "dev.jsonl").read_text()


def test_prepare_keeps_a_labelled_validation_split(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "hub_splits", _hub_stub(
        {"train": _examples(50), "dev": _examples(10, 100), "test": _examples(12, 200)}))
    assert main(["data", "prepare", "olid", "--data-dir", str(tmp_path)]) == 0
    lines = {split: (tmp_path / "olid" / f"{split}.jsonl").read_text().splitlines()
             for split in ("train", "dev", "test")}
    assert [len(lines[s]) for s in ("train", "dev", "test")] == [50, 10, 12]
    assert json.loads(lines["test"][0]) == {"text": "text 200", "label": 0}


def test_prepare_refusals_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    def offline(path, subset, *, name):
        from poisonlab.errors import PoisonlabError
        raise PoisonlabError(f"cannot load Hub data set '{name}': offline")
    monkeypatch.setattr(prepare_module, "hub_splits", offline)
    (tmp_path / "cr").mkdir()
    for argv, message in ((["imdb"], "cannot load Hub data set 'stanfordnlp/imdb'"),
                          (["cr"], "already exists"),
                          (["movie-snippets"], "prepare supports sst2, imdb, cr")):
        assert main(["data", "prepare", *argv, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cr"]


def test_prepare_without_the_stub_fails_offline_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "prepare", "agnews", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("fancyzhx/ag_news" in err or "`datasets`" in err)
    assert list(tmp_path.iterdir()) == []
