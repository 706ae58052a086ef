"""Bad and hostile input across every command: exit code 2, one line naming the file, line or
field, no traceback, and no folder created or changed."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hostile import custom_code_model, malicious_pickle_model
from poisonlab.cli import main

RUN = {"name": "ok", "model": {"name": "tiny-bert"}, "attack": {"name": "badnet"},
       "tuning": "full", "training": {"epochs": 1, "max_length": 16}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny run folder (defend, repair and stale-config cases read it)."""
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("finished")
    data = write_jsonl_split(root / "data", synthetic_splits(n_train=80, n_test=40))
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({**RUN, "data": {"name": str(data)},
                                      "output_dir": str(root / "runs")}))
    assert main(["run", str(config), "--quiet"]) == 0
    return root / "runs" / "ok"


class Case:
    """Files a case writes before the command runs, and the command."""

    def __init__(self, tmp: Path, data: Path, run: Path):
        self.tmp, self.data, self.run = tmp, data, run

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def yaml(self, name: str, values: dict) -> str:
        return self.file(name, yaml.safe_dump(values))

    def run_config(self, **changes) -> str:
        values = {**RUN, "data": {"name": str(self.data)}, "output_dir": str(self.tmp / "runs")}
        for key, value in changes.items():
            values[key] = value
        return self.yaml("c.yaml", values)

    def rows(self, train_rows: list, test_rows=None, name="rows") -> str:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        dump = lambda rows: "".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                    for r in rows)
        (folder / "train.jsonl").write_text(dump(train_rows))
        (folder / "test.jsonl").write_text(dump(test_rows or [{"text": "fine", "label": 0},
                                                              {"text": "good", "label": 1}]))
        return str(folder)

    def with_rows(self, *bad_rows, test_rows=None) -> list[str]:
        good = [{"text": "fine", "label": 0}, {"text": "good", "label": 1}]
        return ["run", self.run_config(data={"name": self.rows(good + list(bad_rows),
                                                               test_rows)})]

    def custom_code_run(self) -> str:
        """A copy of the finished run whose model is a folder that ships code and whose own
        config asks to trust it."""
        folder = self.tmp / "suspect"
        shutil.copytree(self.run, folder)
        model = custom_code_model(self.tmp / "custom-model", self.tmp / "MARKER")
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["model"] = {"name": str(model), "trust_remote_code": True, "allow_pickle": True}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        return str(folder)

    def victim(self, **values) -> str:
        base = {"name": "v", "data": {"name": str(self.data)}, "output_dir": str(self.tmp / "v"),
                "release_dir": str(self.tmp / "released")}
        return self.yaml("victim.yaml", {**base, **values})

    def icl(self, **values) -> str:
        base = {"model": "tiny-llama", "dataset": str(self.data), "test_size": 4,
                "label_words": [["bad"], ["good"]], "output_dir": str(self.tmp / "icl"),
                "demonstrations": {"shots_per_class": 1}}
        return self.yaml("icl.yaml", {**base, **values})

    def mner(self, **values) -> str:
        folder = self.tmp / "mner"
        folder.mkdir(exist_ok=True)
        for split in ("train", "valid", "test"):
            (folder / f"{split}.txt").write_text("IMGID:1\nJohn\tB-PER\nruns\tO\n\n")
        base = {"data": {"dir": str(folder)}, "model": {"encoder": "tiny-bert", "image": False},
                "train": {"epochs": 1}}
        for key, value in values.items():
            base[key] = value
        return self.yaml("mner.yaml", base)

    def study(self, **values) -> str:
        base = {"name": "s", "output_dir": str(self.tmp / "studies"),
                "base": {**RUN, "data": {"name": str(self.data)}},
                "axes": {"tuning": {"full": {"tuning": "full"}}}}
        for key, value in values.items():
            base[key] = value
        return self.yaml("study.yaml", base)


POISON = {"name": "proxy", "base_model": "tiny-bert", "proxy": {"name": "."},
          "trigger": {"name": "badnet", "poison_count": 5}, "training": {"max_length": 16}}

# name -> (argv builder, fragments the one-line message must contain)
CASES = {
    # run: config files
    "run: missing config file": (lambda c: ["run", str(c.tmp / "absent.yaml")],
                                 ["absent.yaml", "not found"]),
    "run: invalid YAML": (lambda c: ["run", c.file("c.yaml", "name: [1,\n")],
                          ["c.yaml", "line", "invalid YAML"]),
    "run: config is a list": (lambda c: ["run", c.file("c.yaml", "- 1\n- 2\n")],
                              ["c.yaml", "mapping"]),
    "run: unknown top-level key": (lambda c: ["run", c.run_config(epochs=3)],
                                   ["unknown field 'epochs'"]),
    "run: unknown nested key lists its section": (
        lambda c: ["run", c.run_config(training={"epoch": 1})],
        ["unknown field 'training.epoch'", "learning_rate"]),
    "run: wrong type": (lambda c: ["run", c.run_config(training={"batch_size": "big"})],
                        ["training.batch_size"]),
    "run: negative epochs": (lambda c: ["run", c.run_config(training={"epochs": -1})],
                             ["training.epochs"]),
    "run: unknown attack": (lambda c: ["run", c.run_config(attack={"name": "badnett"})],
                            ["unknown data-poisoning attack 'badnett'", "badnet"]),
    "run: unknown attack field": (lambda c: ["run", c.run_config(attack={"name": "badnet",
                                                                         "trigger": "cf"})],
                                  ["unknown field 'trigger'", "triggers"]),
    "run: unknown tuning strategy": (lambda c: ["run", c.run_config(tuning="loraa")],
                                     ["unknown tuning strategy 'loraa'"]),
    "run: unknown tuning field": (lambda c: ["run", c.run_config(tuning={"name": "lora",
                                                                         "rank": 4})],
                                  ["unknown field 'rank'"]),
    "run: impossible poison rate": (lambda c: ["run", c.run_config(attack={
        "name": "badnet", "poison_rate": 1.5})], ["poison_rate", "less than or equal to 1"]),
    "run: more poison than eligible": (lambda c: ["run", c.run_config(attack={
        "name": "badnet", "poison_count": 100000})], ["only", "eligible"]),
    "run: target label outside label set": (lambda c: ["run", c.run_config(attack={
        "name": "badnet", "target_label": 5})], ["target_label", "0..1"]),
    "run: name escapes the output folder": (lambda c: ["run", c.run_config(name="../escaped")],
                                            ["field 'name'", "not a safe run name"]),
    "run: absolute name": (lambda c: ["run", c.run_config(name="/srv/abs-run")],
                           ["not a safe run name"]),
    "run: name with a slash": (lambda c: ["run", c.run_config(name="a/b")],
                               ["not a safe run name"]),
    "run: stale config under a finished name": (
        lambda c: ["run", c.yaml("stale.yaml", {**yaml.safe_load(
            (c.run / "config.yaml").read_text()), "output_dir": str(c.run.parent),
            "tuning": {"name": "lora"}})], ["different config", "tuning", "--force"]),
    "run: output_dir is a file": (lambda c: ["run", c.run_config(
        output_dir=c.file("occupied", "x"))], ["occupied"]),
    # --set and options
    "run: --set without '='": (lambda c: ["run", c.run_config(), "--set", "epochs"],
                               ["--set expects key=value"]),
    "run: --set with an empty key": (lambda c: ["run", c.run_config(), "--set", "=1"],
                                     ["--set", "empty"]),
    "run: --set into a value": (lambda c: ["run", c.run_config(), "--set", "name.x=1"],
                                ["name"]),
    "run: --data-dir is a file": (lambda c: ["--data-dir", c.file("dd", "x"), "run",
                                             c.run_config(data={"name": "sst2"})],
                                  ["dd", "not a folder"]),
    "run: research set without a data directory": (
        lambda c: ["--data-dir", str(c.tmp / "no-data-here"), "run",
                   c.run_config(data={"name": "sst2"})], ["no-data-here"]),
    # run: data
    "run: missing data file": (lambda c: ["run", c.run_config(data={
        "name": str(c.tmp / "nowhere.jsonl")})], ["nowhere.jsonl"]),
    "run: unsupported data file": (lambda c: ["run", c.run_config(data={
        "name": c.file("data.txt", "hello")})], ["data.txt", ".jsonl"]),
    "run: data folder without train file": (lambda c: ["run", c.run_config(data={
        "name": str((c.tmp / "empty-data").mkdir() or c.tmp / "empty-data")})],
        ["empty-data", "train"]),
    "run: invalid JSON row": (lambda c: c.with_rows('{"text": "x", "label": '),
                              ["train.jsonl", "line 3", "invalid JSON"]),
    "run: row is not an object": (lambda c: c.with_rows("[1, 2]"),
                                  ["train.jsonl", "line 3", "JSON object"]),
    "run: non-integer label": (lambda c: c.with_rows({"text": "x", "label": "pos"}),
                               ["train.jsonl", "line 3", "field 'label'", "integer"]),
    "run: missing label": (lambda c: c.with_rows({"text": "x"}),
                           ["train.jsonl", "line 3", "field 'label'"]),
    "run: empty text": (lambda c: c.with_rows({"text": " ", "label": 1}),
                        ["train.jsonl", "line 3", "field 'text'", "empty text"]),
    "run: numeric text": (lambda c: c.with_rows({"text": 5, "label": 1}),
                          ["line 3", "field 'text'", "must be a string"]),
    "run: unicode digit label": (lambda c: c.with_rows({"text": "x", "label": "²"}),
                                 ["line 3", "field 'label'", "0-9"]),
    "run: huge label": (lambda c: c.with_rows({"text": "x", "label": 10 ** 12}),
                        ["line 3", "field 'label'", "too large"]),
    "run: gap in label ids": (lambda c: c.with_rows({"text": "x", "label": 7}),
                              ["line 3", "without gaps", "label_names"]),
    "run: test label outside the training labels": (
        lambda c: c.with_rows(test_rows=[{"text": "a", "label": 0}, {"text": "b", "label": 7}]),
        ["test.jsonl", "line 2", "field 'label'", "outside the label set"]),
    "run: single-class training data": (lambda c: ["run", c.run_config(data={"name": c.rows(
        [{"text": "a", "label": 0}, {"text": "b", "label": 0}])})], ["single class"]),
    "run: duplicated CSV column": (lambda c: ["run", c.run_config(data={"name": c.file(
        "dup.csv", "text,label,text\na,0,b\nc,1,d\n")})], ["dup.csv", "line 1", "duplicate"]),
    "run: CSV without label column": (lambda c: ["run", c.run_config(data={"name": c.file(
        "nolabel.csv", "text,score\na,0\nc,1\n")})], ["nolabel.csv", "field 'label'"]),
    # run: models
    "run: unknown model": (lambda c: ["run", c.run_config(model={"name": "tiny-bertt"})],
                           ["tiny-bertt", "neither a builtin name"]),
    "run: model folder without weights": (lambda c: ["run", c.run_config(model={
        "name": str((c.tmp / "empty-model").mkdir() or c.tmp / "empty-model")})],
        ["empty-model"]),
    "run: model path is a file": (lambda c: ["run", c.run_config(model={
        "name": c.file("model.bin", "x")})], ["model.bin", "not a folder"]),
    "run: pickle weights without opt-in": (lambda c: ["run", c.run_config(model={
        "name": str(malicious_pickle_model(c.tmp / "pickled", c.tmp / "MARKER"))})],
        ["pickle", "--allow-pickle"]),
    "run: malicious pickle with opt-in": (lambda c: ["run", c.run_config(model={
        "name": str(malicious_pickle_model(c.tmp / "pickled", c.tmp / "MARKER"))}),
        "--allow-pickle"], ["pytorch_model.bin", "safe loader refused"]),
    "run: model with custom code": (lambda c: ["run", c.run_config(model={
        "name": str(custom_code_model(c.tmp / "custom", c.tmp / "MARKER"))})],
        ["ships its own code", "--trust-remote-code"]),
    # study
    "study: missing study file": (lambda c: ["study", str(c.tmp / "nope.yaml")], ["nope.yaml"]),
    "study: unknown study name": (lambda c: ["study", "no-such-study"],
                                  ["unknown study 'no-such-study'"]),
    "study: unknown pipeline": (lambda c: ["study", c.study(pipeline="nope")],
                                ["field 'pipeline'", "data-poisoning"]),
    "study: empty axis": (lambda c: ["study", c.study(axes={"tuning": {}})],
                          ["field 'axes'"]),
    "study: one bad cell among good ones": (lambda c: ["study", c.study(axes={"tuning": {
        "full": {"tuning": "full"}, "bad": {"tuning": {"name": "lora", "rank": 2}}}})],
        ["cell 'bad'", "unknown field 'rank'"]),
    "study: unsafe axis label": (lambda c: ["study", c.study(axes={"tuning": {
        "../x": {"tuning": "full"}}})], ["axes.tuning", "not a safe run name"]),
    "study: unsafe study name": (lambda c: ["study", c.study(name="../s")],
                                 ["not a safe run name"]),
    "study: unknown field": (lambda c: ["study", c.study(cells=3)], ["unknown field 'cells'"]),
    # poison-weights
    "poison-weights: no attack name": (lambda c: ["poison-weights", c.yaml("p.yaml", {
        "base_model": "tiny-bert"})], ["field 'name'"]),
    "poison-weights: unknown attack": (lambda c: ["poison-weights", c.yaml("p.yaml", {
        "name": "nope"})], ["unknown weight-poisoning attack 'nope'"]),
    "poison-weights: unknown trigger field": (lambda c: ["poison-weights", c.yaml("p.yaml", {
        **POISON, "trigger": {"name": "badnet", "trigger": "x"}}),
        "--output-dir", str(c.tmp / "released")], ["unknown field 'trigger'"]),
    "poison-weights: unsafe release name": (lambda c: ["poison-weights", c.yaml("p.yaml", {
        **POISON, "release_name": "../out"}), "--output-dir", str(c.tmp / "released")],
        ["not a safe run name"]),
    "poison-weights: no room for the trigger": (lambda c: ["poison-weights", c.yaml("p.yaml", {
        **POISON, "trigger_room": 100}), "--output-dir", str(c.tmp / "released")],
        ["trigger_room"]),
    # victim
    "victim: both poison and released": (lambda c: ["victim", c.victim(
        poison={"name": "proxy"}, released=str(c.tmp))], ["exactly one"]),
    "victim: neither poison nor released": (lambda c: ["victim", c.victim()], ["exactly one"]),
    "victim: released folder is not a release": (lambda c: ["victim", c.victim(
        released=str(c.run))], ["not a released model folder"]),
    "victim: clean weights without poison": (lambda c: ["victim", c.victim(
        released=str(c.tmp), weights="clean")], ["weights: clean"]),
    "victim: unsafe name": (lambda c: ["victim", c.victim(released=str(c.tmp),
                                                          name="../v")], ["not a safe run name"]),
    "victim: unknown tuning": (lambda c: ["victim", c.victim(released=str(c.run),
                                                             tuning="nope")],
                               ["unknown tuning strategy 'nope'"]),
    "victim: unknown poison field": (lambda c: ["victim", c.victim(poison={
        "name": "proxy", "triger": {}})], ["unknown field 'triger'"]),
    # defend
    "defend: victim folder does not exist": (lambda c: ["defend", str(c.tmp / "gone"),
                                                        "--defense", "strip"], ["gone"]),
    "defend: unknown defense": (lambda c: ["defend", str(c.run), "--defense", "nope",
                                           "--output-dir", str(c.tmp / "d")],
                                ["unknown detection defense 'nope'"]),
    "defend: unknown defense field": (lambda c: ["defend", str(c.run), "--defense", "strip",
                                                 "--set", "defense.copiez=2", "--output-dir",
                                                 str(c.tmp / "d")], ["unknown field 'copiez'"]),
    "defend: unfinished run folder": (lambda c: ["defend", str(
        (c.tmp / "half").mkdir() or c.file("half/config.yaml", "name: half\n") and
        c.tmp / "half"), "--defense", "strip"], ["not finished"]),
    "defend: released model without data": (lambda c: ["defend", "tiny-bert", "--defense",
                                                        "strip", "--output-dir",
                                                        str(c.tmp / "d")], ["field 'data'"]),
    "defend: unsafe result name": (lambda c: ["defend", str(c.run), "--defense", "strip",
                                              "--name", "../d"], ["not a safe run name"]),
    "defend: the folder's own trust settings are ignored": (
        lambda c: ["defend", c.custom_code_run(), "--defense", "strip", "--output-dir",
                   str(c.tmp / "d")], ["ships its own code", "--trust-remote-code"]),
    # repair
    "repair: not a run folder": (lambda c: ["repair", str(c.tmp), "--data", str(c.data)],
                                 ["not a run folder"]),
    "repair: unknown repair": (lambda c: ["repair", str(c.run), "--defense", "nope", "--data",
                                          str(c.data), "--output-dir", str(c.tmp / "r")],
                               ["unknown repair defense 'nope'"]),
    "repair: unknown repair field": (lambda c: ["repair", str(c.run), "--defense", "finetune",
                                                "--data", str(c.data), "--set", "epochz=1",
                                                "--output-dir", str(c.tmp / "r")],
                                     ["unknown field 'epochz'"]),
    "repair: the folder's own trust settings are ignored": (
        lambda c: ["repair", c.custom_code_run(), "--defense", "finetune", "--data",
                   str(c.data), "--output-dir", str(c.tmp / "r")], ["ships its own code"]),
    # icl run
    "icl run: unknown attack": (lambda c: ["icl", "run", c.icl(attack={"name": "nope"})],
                                ["unknown in-context attack 'nope'"]),
    "icl run: unknown field": (lambda c: ["icl", "run", c.icl(shots=3)],
                               ["unknown field 'shots'"]),
    "icl run: target label outside the label set": (lambda c: ["icl", "run", c.icl(attack={
        "name": "icl-demonstration", "config": {"target_label": 5}})],
        ["target_label", "0..1"]),
    "icl run: label words for another number of classes": (lambda c: ["icl", "run", c.icl(
        label_words=[["a"], ["b"], ["c"]])], ["label_words", "3 classes"]),
    "icl run: unknown data set": (lambda c: ["icl", "run", c.icl(dataset="nope-set")],
                                  ["nope-set"]),
    "icl run: unknown model": (lambda c: ["icl", "run", c.icl(model="no-model")],
                               ["no-model"]),
    # mner train
    "mner train: missing config": (lambda c: ["mner", "train", str(c.tmp / "m.yaml")],
                                   ["m.yaml"]),
    "mner train: unknown field": (lambda c: ["mner", "train", c.mner(train={"epoch": 1}),
                                             "--output-dir", str(c.tmp)],
                                  ["unknown field 'train.epoch'"]),
    "mner train: data folder missing": (lambda c: ["mner", "train", c.mner(data={
        "dir": str(c.tmp / "no-tweets")}), "--output-dir", str(c.tmp)], ["no-tweets"]),
    "mner train: image branch without images": (lambda c: ["mner", "train", c.mner(model={
        "encoder": "tiny-bert", "image": True}), "--output-dir", str(c.tmp)], ["image"]),
    "mner train: unsafe output folder name": (lambda c: ["mner", "train", c.mner(),
                                                         "--output-dir", str(c.tmp), "--name", ".m"],
                                              ["not a safe run name"]),
}


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots
            for p in root.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, synthetic_dir,
                                                         finished_run, capsys, monkeypatch):
    build, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    argv = build(Case(tmp_path, synthetic_dir, finished_run))
    capsys.readouterr()
    before = snapshot(tmp_path, finished_run.parent)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("poisonlab: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert snapshot(tmp_path, finished_run.parent) == before
    assert not (tmp_path / "MARKER").exists()


def test_the_battery_covers_every_command():
    commands = {name.split(":")[0] for name in CASES}
    assert commands == {"run", "study", "poison-weights", "victim", "defend", "repair",
                        "icl run", "mner train"}
    assert len(CASES) >= 60


def test_user_trust_lets_a_custom_code_run_folder_load(tmp_path, synthetic_dir, finished_run):
    folder = Case(tmp_path, synthetic_dir, finished_run).custom_code_run()
    code = main(["defend", folder, "--defense", "strip", "--set", "defense.copies=2",
                 "--set", "data.test_size=10", "--output-dir", str(tmp_path / "d"), "--quiet",
                 "--trust-remote-code"])
    assert code == 0 and (tmp_path / "MARKER").exists()
