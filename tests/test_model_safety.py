"""Suspect models must not run code on load: custom code (auto_map) and hostile pickles are refused
with one line, and `check_model_source` refuses exactly what loading refuses, without loading."""

import json

import pytest
from hostile import custom_code_model, malicious_pickle_model

from poisonlab.cli import main
from poisonlab.errors import PoisonlabError, UnsafeLoadError
from poisonlab.models.loading import (check_model_source, load_causal_lm, load_classifier,
                                      load_encoder, load_tokenizer)

RUN_CONFIG = """\
name: hostile
data: {{name: {data}}}
model: {{name: {model}}}
attack: {{name: badnet}}
tuning: full
training: {{epochs: 1, max_length: 16}}
output_dir: {out}
"""

LOADERS = {"classifier": load_classifier, "encoder": load_encoder, "causal": load_causal_lm,
           "tokenizer": load_tokenizer}


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker.txt"


@pytest.fixture
def custom_code_folder(tmp_path, marker):
    return custom_code_model(tmp_path / "custom", marker)


@pytest.fixture
def pickle_folder(tmp_path, marker):
    return malicious_pickle_model(tmp_path / "pickled", marker)


def assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.strip() == message, message
    return message


def test_custom_code_model_runs_its_code_in_transformers_when_trusted(custom_code_folder, marker):
    """Guards the fixture: both auto_map entries resolve offline to the folder's module."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    assert not marker.exists()
    config = AutoConfig.from_pretrained(custom_code_folder, trust_remote_code=True)
    assert type(config).__name__ == "CustomBertConfig" and marker.exists()
    model = AutoModelForSequenceClassification.from_pretrained(custom_code_folder,
                                                               trust_remote_code=True)
    assert type(model).__name__ == "CustomBertForSequenceClassification"


def test_custom_code_loads_when_trusted(custom_code_folder, marker):
    loaded = load_classifier(str(custom_code_folder), 2, trust_remote_code=True)
    assert type(loaded.model).__name__ == "CustomBertForSequenceClassification"
    assert loaded.kind == "encoder" and marker.exists()


@pytest.mark.parametrize("loader", list(LOADERS))
def test_custom_code_is_refused_without_trust(loader, custom_code_folder, marker):
    with pytest.raises(UnsafeLoadError) as error:
        LOADERS[loader](str(custom_code_folder))
    assert assert_one_line(error) == (
        f"{custom_code_folder}: the model ships its own code (auto_map in config.json), which "
        "would run on load; pass --trust-remote-code only if you trust its author")
    assert not marker.exists()


def test_custom_tokenizer_code_is_refused_before_the_tokenizer_loads(custom_code_folder, marker):
    config_path = custom_code_folder / "config.json"
    config = json.loads(config_path.read_text())
    tokenizer_path = custom_code_folder / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_path.read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "custom_model.CustomTokenizer"]}
    tokenizer_path.write_text(json.dumps(tokenizer_config))
    config.pop("auto_map")
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsafeLoadError, match=r"auto_map in tokenizer_config\.json"):
        load_classifier(str(custom_code_folder))
    assert not marker.exists()


def test_the_hostile_pickle_is_really_hostile(pickle_folder, marker):
    """Guards the fixture: plain unpickling (what torch.load(weights_only=False) does) runs it."""
    import torch
    torch.load(pickle_folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_pickle_weights_are_refused_unless_allowed(pickle_folder, marker):
    with pytest.raises(UnsafeLoadError) as error:
        load_classifier(str(pickle_folder))
    assert "holds only pickle weights" in assert_one_line(error)
    assert "--allow-pickle" in str(error.value)
    assert not marker.exists()


def test_allowed_pickle_still_goes_through_torchs_safe_loader(pickle_folder, marker):
    with pytest.raises(UnsafeLoadError) as error:
        load_classifier(str(pickle_folder), allow_pickle=True)
    message = assert_one_line(error)
    assert message.startswith(
        f"{pickle_folder / 'pytorch_model.bin'}: torch's safe loader refused this pickle (")
    assert "Unsupported global" in message and message.endswith("; it may try to run code")
    assert not marker.exists()


def test_hub_refusal_of_custom_code_becomes_one_line(monkeypatch):
    """A Hub id is checked by transformers; its multi-line ValueError becomes UnsafeLoadError."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.dynamic_module_utils import resolve_trust_remote_code

    def refuse(name, *args, trust_remote_code=False, **kwargs):
        resolve_trust_remote_code(trust_remote_code, name, False, True)
        raise AssertionError("transformers should have refused")

    tokenizer = load_tokenizer("tiny-bert")
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", refuse)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    with pytest.raises(UnsafeLoadError) as error:
        load_classifier("some-org/custom-model")
    assert assert_one_line(error).startswith(
        "some-org/custom-model: the model ships its own code (auto_map in config.json)")
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(UnsafeLoadError, match=r"auto_map in tokenizer_config\.json"):
        load_classifier("some-org/custom-model")


def test_the_cli_refuses_custom_code_in_one_line(tmp_path, synthetic_dir, custom_code_folder,
                                                 marker, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(RUN_CONFIG.format(data=synthetic_dir, model=custom_code_folder,
                                        out=tmp_path / "runs"))
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poisonlab: error: ") and err.count("\n") == 1, err
    assert "ships its own code" in err and "--trust-remote-code" in err
    assert not marker.exists()


def _bad_sources(tmp_path, marker):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"")
    return {
        "missing folder": (str(tmp_path / "absent"), "neither a builtin name"),
        "a file, not a folder": (str(a_file), "is not a folder"),
        "empty folder": (str(empty), "holds no model weights"),
        "pickle only": (str(malicious_pickle_model(tmp_path / "pickled", marker)),
                        "holds only pickle weights"),
        "custom code": (str(custom_code_model(tmp_path / "custom", marker)),
                        "ships its own code"),
        "unknown builtin name": ("tiny-bertt", "neither a builtin name"),
    }


@pytest.mark.parametrize("case", ["missing folder", "a file, not a folder", "empty folder",
                                  "pickle only", "custom code", "unknown builtin name"])
def test_check_model_source_raises_what_loading_raises(case, tmp_path, marker):
    source, fragment = _bad_sources(tmp_path, marker)[case]
    with pytest.raises(PoisonlabError) as checked:
        check_model_source(source)
    with pytest.raises(PoisonlabError) as loaded:
        load_classifier(source)
    assert type(checked.value) is type(loaded.value)
    assert str(checked.value) == str(loaded.value)
    assert fragment in assert_one_line(checked)
    assert not marker.exists()


def test_check_model_source_accepts_what_loading_accepts(tmp_path, marker):
    plain = tmp_path / "plain"
    loaded = load_classifier("tiny-bert", 2)
    loaded.model.save_pretrained(plain)
    loaded.tokenizer.save_pretrained(plain)
    check_model_source("tiny-bert")
    check_model_source("tiny-llama")
    check_model_source(str(plain))
    check_model_source("some-org/some-model")
    check_model_source(str(malicious_pickle_model(tmp_path / "pickled", marker)),
                       allow_pickle=True)
    check_model_source(str(custom_code_model(tmp_path / "custom", marker)),
                       trust_remote_code=True)
    assert not marker.exists(), "the preflight must not import or unpickle anything"
