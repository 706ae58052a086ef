"""End-to-end MNER-QG with a tiny text encoder (tiny-bert) on the synthetic set: the full model
overfits 32 tweets, and the same seed gives the same metrics. Also the CLI wiring."""

import argparse
import warnings

import pytest
import torch

from poisonlab.errors import ConfigError
from poisonlab.commands.mner import add_parser
from poisonlab.mner.config import MnerConfig
from poisonlab.report.mner import ablation_table, per_type_table
from poisonlab.mner.synthetic import generate
from poisonlab.experiment.mner import run_eval, run_training
from poisonlab.mner.train import build_pipeline, load_run


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread than on two shared ones; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic32(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "data", n_train=32, n_valid=8, n_test=8,
                    seed=0)


def _config(folder, **train) -> MnerConfig:
    return MnerConfig.model_validate({
        "seed": 0,
        "data": {"dir": str(folder), "images": "images", "boxes": "boxes.jsonl"},
        "model": {"encoder": "tiny-bert", "image_size": 64, "cnn_channels": [16, 32, 64, 64, 64],
                  "fusion_dim": 64},
        "train": {"batch_size": 8, "lr": 3e-3, "head_lr": 3e-3, "warmup": 0.05, **train},
    })


def _train_split_metrics(config, out):
    """Train, then score the training split itself (the overfit check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(config, out, eval_splits=())
        return run_eval(out, "train")["train"]


@pytest.mark.slow
def test_tiny_model_overfits_32_synthetic_tweets(synthetic32, tmp_path):
    # 600 steps: about 60-90 s on one core; at 400 the span heads are still under the 0.5
    # thresholds for some entities (F1 0.84, all of it recall)
    metrics = _train_split_metrics(_config(synthetic32, epochs=150), tmp_path / "run")
    assert metrics["entities"]["micro"]["f1"] > 0.9, metrics["entities"]
    assert metrics["grounding"]["accuracy"] > 0.7, metrics["grounding"]


def test_same_seed_same_metrics(synthetic32, tmp_path):
    config = _config(synthetic32, epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = run_training(config, tmp_path / "a", eval_splits=("test",))
        second = run_training(config, tmp_path / "b", eval_splits=("test",))
    assert first["test"] == second["test"]
    assert (tmp_path / "a" / "model.safetensors").is_file()
    assert load_run(tmp_path / "a").types == ["LOC", "ORG", "OTHER", "PER"]
    assert "| micro |" in per_type_table(tmp_path / "a")
    table = ablation_table({"a": [tmp_path / "a"], "both": [tmp_path / "a", tmp_path / "b"]})
    assert table.count("| a | 1 |") == 1
    assert "| both | 2 |" in table and "± 0.00" in table  # identical runs: no spread


def test_text_only_mode_has_no_image_branch(synthetic32, tmp_path):
    config = _config(synthetic32, epochs=1)
    config.model.image = False
    config.data.images = None
    metrics = run_training(config, tmp_path / "text", eval_splits=("test",))
    assert "grounding" not in metrics["test"]
    assert not hasattr(load_run(tmp_path / "text").model, "cnn")


def test_weights_that_do_not_fit_the_config_are_a_clear_error(synthetic32, tmp_path):
    from safetensors.torch import load_file, save_file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(_config(synthetic32, epochs=0.25), tmp_path / "run", eval_splits=())
    weights = tmp_path / "run" / "model.safetensors"
    state = load_file(str(weights))
    del state["no_region_head.bias"]
    save_file(state, str(weights))
    with pytest.raises(ConfigError, match="no_region_head.bias"):
        load_run(tmp_path / "run")


def test_threshold_sweep_matches_eval_at_each_threshold(synthetic32, tmp_path):
    from poisonlab.mner.thresholds import sweep_thresholds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(_config(synthetic32, epochs=20), tmp_path / "run", eval_splits=())
        sweep = sweep_thresholds(tmp_path / "run", "train", (0.02, 0.5))
        for row in sweep["sweep"]:
            micro = run_eval(tmp_path / "run", "train", threshold=row["threshold"])["train"]
            assert micro["entities"]["micro"]["f1"] == row["f1"]
    low, high = sweep["sweep"]
    assert low["recall"] > high["recall"]  # a lower threshold admits more spans
    assert (tmp_path / "run" / "thresholds_train.json").is_file()
    with pytest.raises(ConfigError, match="outside"):
        run_eval(tmp_path / "run", "valid", threshold=1.0)


def test_image_model_without_images_is_a_config_error(synthetic32, tmp_path):
    config = _config(synthetic32, epochs=1)
    config.data.images = None
    with pytest.raises(ConfigError, match="model.image"):
        run_training(config, tmp_path / "x")


def test_cli_parses_mner_subcommands():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mner", "train", "configs/mner/synthetic.yaml", "--set",
                              "train.epochs=1"])
    assert callable(args.func) and args.set == ["train.epochs=1"]
    args = parser.parse_args(["mner", "synth", "--out", "x", "--train", "5"])
    assert args.train == 5


def test_cnn_starts_from_a_local_pretrained_backbone(synthetic32, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(_config(synthetic32, epochs=1), tmp_path / "donor", eval_splits=())
    donor = load_run(tmp_path / "donor").model.cnn.state_dict()
    config = _config(synthetic32, epochs=1)
    config.data.types = ["LOC", "ORG", "OTHER", "PER"]
    fresh = build_pipeline(config).model.cnn.state_dict()
    assert not torch.equal(fresh["stages.0.0.weight"], donor["stages.0.0.weight"])
    config.model.cnn_weights = str(tmp_path / "donor" / "model.safetensors")
    started = build_pipeline(config).model.cnn.state_dict()
    assert all(torch.equal(started[name], donor[name]) for name in donor)

    config.model.cnn_channels = [8, 16, 32, 32, 32]
    with pytest.raises(ConfigError, match="does not fit"):
        build_pipeline(config)
    config.model.cnn_weights = str(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="no such file"):
        build_pipeline(config)


def test_killed_training_resumes_to_the_same_weights(synthetic32, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    import poisonlab.mner.train as train_module
    config = _config(synthetic32, epochs=3, checkpoint_every=5)  # 12 steps, kill at step 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = run_training(config, tmp_path / "straight", eval_splits=("test",))
        real_make_batch, calls = train_module.make_batch, []

        def killed_at_step_8(*args, **kwargs):
            calls.append(1)
            if len(calls) == 9:
                raise KeyboardInterrupt
            return real_make_batch(*args, **kwargs)
        monkeypatch.setattr(train_module, "make_batch", killed_at_step_8)
        with pytest.raises(KeyboardInterrupt):
            run_training(config, tmp_path / "killed", eval_splits=("test",))
        partial = tmp_path / ".killed.partial"  # the run protocol's unfinished folder
        assert (partial / "checkpoint.safetensors").is_file() and not (tmp_path / "killed").exists()
        before_kill = _checkpoint_seconds(partial)
        resumed_calls = []

        def counted(*args, **kwargs):
            resumed_calls.append(1)
            return real_make_batch(*args, **kwargs)
        monkeypatch.setattr(train_module, "make_batch", counted)
        resumed = run_training(config, tmp_path / "killed", eval_splits=("test",))
    assert len(resumed_calls) == 7 + 1  # steps 5..11 from the step-5 checkpoint, then the test batch
    assert before_kill > 0 and resumed["train_seconds"] >= round(before_kill, 1)
    assert resumed["test"] == straight["test"]
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "killed" / "checkpoint.safetensors").exists() and not partial.exists()

    config.train.lr = 1e-3  # a different config must not silently resume a stale checkpoint
    monkeypatch.setattr(train_module, "make_batch", killed_at_step_8)
    calls.clear()
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(_config(synthetic32, epochs=3, checkpoint_every=5), tmp_path / "other")
    with pytest.raises(ConfigError, match="different config"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(config, tmp_path / "other")
    # settings that leave the weights alone do not block a resume
    calls.clear()
    monkeypatch.setattr(train_module, "make_batch", counted)
    resumed_calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(_config(synthetic32, epochs=3, checkpoint_every=4, eval_batch_size=4),
                     tmp_path / "other", eval_splits=())
    assert len(resumed_calls) == 7


def _checkpoint_seconds(folder) -> float:
    import json
    from safetensors import safe_open
    with safe_open(str(folder / "checkpoint.safetensors"), "pt") as handle:
        return json.loads(handle.metadata()["state"])["seconds"]
