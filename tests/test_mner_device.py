"""MNER-QG follows its runtime: every tensor of training and prediction is made on the device of
the model's inputs (or on the host, on purpose), never on torch's default device; a checkpoint
carries the CUDA generators when the model is on CUDA; bf16 autocast trains on a CPU.

How the default-device check works: the model and every batch are explicitly on the CPU while
torch's default device is "meta". A tensor made without an explicit device then lands on meta,
and mixing it with the CPU tensors fails (or, where an op lets it through, the result has no data
and the run fails when it is read back), so the whole training and prediction path, resume from a
checkpoint included, must run and give the results of an ordinary run."""

import contextlib
import json
import warnings

import pytest
import torch

from poisonlab.experiment.mner import run_training
from poisonlab.mner import model as model_module
from poisonlab.mner.checkpoint import (CUDA_RNG, Progress, config_key, load_checkpoint,
                                      save_checkpoint)
from poisonlab.mner.config import MnerConfig
from poisonlab.mner.synthetic import generate
from poisonlab.mner.train import build_pipeline, fit, load_data, make_batch, predict
from poisonlab.runtime import Runtime

TYPES = ["LOC", "ORG", "OTHER", "PER"]


@pytest.fixture(scope="module")
def synthetic16(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "data", n_train=16, n_valid=4, n_test=8,
                    seed=0)


def _config(folder, runtime=None, **train) -> MnerConfig:
    return MnerConfig.model_validate({
        "seed": 0,
        "data": {"dir": str(folder), "images": "images", "boxes": "boxes.jsonl", "types": TYPES},
        "model": {"encoder": "tiny-bert", "image_size": 64, "cnn_channels": [16, 32, 64, 64, 64],
                  "fusion_dim": 64},
        "loss": {"no_box_means_absent": True},  # the absent-row path of the grounding loss too
        "train": {"batch_size": 4, "lr": 3e-3, "head_lr": 3e-3, "warmup": 0.05, **train},
        "runtime": runtime or {},
    })


def _splits(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic set's missing and corrupt images
        return load_data(config, ("train", "test"))


@contextlib.contextmanager
def default_device(device: str | None):
    """torch's default device, for factory calls without `device=` (None: leave it alone)."""
    if device is None:
        yield
        return
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(None)


def _train_and_predict(config, splits, runtime, out_dir, default: str | None):
    """fit with a checkpoint after the first step, fit a fresh model again from that checkpoint
    (a resume), then predict: (predictions, loss log, weights). Models are built, on the CPU,
    outside the default device."""
    first, resumed = build_pipeline(config), build_pipeline(config)
    with default_device(default):
        fit(first, splits["train"], out_dir, runtime)
        progress = fit(resumed, splits["train"], out_dir, runtime)
        predictions = predict(resumed, splits["test"], runtime)
    return predictions, progress.log, resumed.model.state_dict()


def test_training_and_prediction_make_no_tensor_on_the_default_device(synthetic16, tmp_path):
    # 4 batches of 4 tweets, 2 per optimizer step: 2 steps, a checkpoint after the first
    config = _config(synthetic16, {"device": "cpu", "gradient_accumulation_steps": 2,
                                   "gradient_checkpointing": True},
                     epochs=1, checkpoint_every=1)
    splits = _splits(config)
    runtime = Runtime(config.runtime).check()
    expected = _train_and_predict(config, splits, runtime, tmp_path / "cpu", None)
    got = _train_and_predict(config, splits, runtime, tmp_path / "meta", "meta")
    assert got[0] == expected[0] and got[1] == expected[1]
    assert all(torch.equal(got[2][name], expected[2][name]) for name in expected[2])
    assert all(value.device.type == "cpu" for value in got[2].values())


def test_the_check_fails_on_a_tensor_made_on_the_default_device(synthetic16, tmp_path,
                                                                 monkeypatch):
    real = model_module.coordinate_map

    def on_the_default_device(size, device, dtype=torch.float32):
        return real(size, torch.get_default_device(), dtype)  # the bug: ignores the input's
    monkeypatch.setattr(model_module, "coordinate_map", on_the_default_device)
    config = _config(synthetic16, {"device": "cpu"}, epochs=0.25)
    splits = _splits(config)
    runtime = Runtime(config.runtime).check()
    pipe = build_pipeline(config)
    with default_device("meta"), pytest.raises((RuntimeError, NotImplementedError)):
        fit(pipe, splits["train"], None, runtime)


def test_gradient_checkpointing_changes_no_weight(synthetic16):
    weights = []
    for checkpointing in (False, True):
        config = _config(synthetic16, {"device": "cpu", "gradient_checkpointing": checkpointing},
                         epochs=0.5)
        pipe = build_pipeline(config)
        fit(pipe, _splits(config)["train"], None, Runtime(config.runtime))
        assert pipe.model.encoder.is_activation_checkpointing == checkpointing
        weights.append(pipe.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_bf16_trains_the_tiny_model_on_a_cpu(synthetic16, tmp_path):
    config = _config(synthetic16, {"mixed_precision": "bf16"}, batch_size=8, epochs=6)
    config.data.train_limit = 8  # one batch, seen 6 times
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = run_training(config, tmp_path / "bf16", eval_splits=("test",))
    log = [json.loads(line) for line in (tmp_path / "bf16" / "train_log.jsonl").open()]
    assert [row["step"] for row in log] == [0, 5]
    assert log[-1]["total"] < 0.8 * log[0]["total"], log
    assert "grounding" in metrics["test"]
    environment = json.loads((tmp_path / "bf16" / "environment.json").read_text())
    assert environment["runtime"]["mixed_precision"] == "bf16"  # what ran, recorded

    runtime = Runtime(config.runtime)
    pipe = build_pipeline(config)
    batch = make_batch(pipe, _splits(config)["train"], [0, 1])
    with runtime.autocast():
        output = pipe.model(batch.text, batch.images)
    assert output.start.dtype == torch.bfloat16  # autocast is on, weights stay fp32
    assert next(pipe.model.parameters()).dtype == torch.float32


def test_checkpoint_key_leaves_out_where_it_runs_and_a_default_runtime(synthetic16):
    default = _config(synthetic16)
    before_runtime = default.model_dump(mode="json")
    del before_runtime["runtime"]
    old_style = MnerConfig.model_validate(before_runtime)  # as written before the section
    assert config_key(default) == config_key(old_style)
    assert "runtime" not in json.loads(config_key(default))
    moved = _config(synthetic16, {"device": "cpu", "gradient_checkpointing": True})
    assert config_key(moved) == config_key(default)
    for changed in ({"gradient_accumulation_steps": 2}, {"mixed_precision": "bf16"}):
        assert config_key(_config(synthetic16, changed)) != config_key(default)


def test_a_default_runtime_section_leaves_run_folders_current(synthetic16):
    """Run folders written before MNER configs had a `runtime:` section keep their config hash
    (the run protocol drops default runtime values), and a changed runtime is a different run."""
    from poisonlab.experiment.rundir import config_hash
    resolved = _config(synthetic16).model_dump(mode="json")
    earlier = {name: value for name, value in resolved.items() if name != "runtime"}
    assert config_hash(resolved) == config_hash(earlier)
    resolved["runtime"]["mixed_precision"] = "bf16"
    assert config_hash(resolved) != config_hash(earlier)


def test_checkpoint_carries_cuda_generators_and_loads_without_them(tmp_path, monkeypatch):
    """No GPU here: CUDA's generator calls are stood in for, to check the format both ways."""
    from poisonlab.mner import checkpoint

    def parts():
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.AdamW(model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, optimizer, scheduler, torch.Generator().manual_seed(0)

    saved_states = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)

    # a model on the CPU: no CUDA state is written, and loading one sets none
    save_checkpoint(tmp_path, "key", *parts(), Progress(step=3), 1.0)
    assert load_checkpoint(tmp_path, "key", *parts()).step == 3 and restored == []

    monkeypatch.setattr(checkpoint, "model_device", lambda model: torch.device("cuda"))
    save_checkpoint(tmp_path, "key", *parts(), Progress(step=4), 1.0)
    from safetensors.torch import load_file
    written = load_file(str(tmp_path / checkpoint.CHECKPOINT))
    assert sorted(name for name in written if name.startswith(CUDA_RNG)) == [f"{CUDA_RNG}0",
                                                                             f"{CUDA_RNG}1"]
    assert load_checkpoint(tmp_path, "key", *parts()).step == 4
    assert len(restored) == 1 and torch.equal(restored[0], saved_states[0])  # one device here

    restored.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # resumed on a CPU machine
    assert load_checkpoint(tmp_path, "key", *parts()).step == 4 and restored == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_a_run_trained_on_a_gpu_evaluates_on_the_cpu_with_device(synthetic16, tmp_path,
                                                                  capsys):
    """A run folder records runtime.device: cuda; here, without CUDA, `mner eval` says so in
    one line (exit 2), and `--device cpu` evaluates it."""
    from poisonlab.cli import main
    config = _config(synthetic16, epochs=1)
    config.data.train_limit = 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_training(config, tmp_path / "run", eval_splits=())
    recorded = tmp_path / "run" / "config.yaml"
    recorded.write_text(recorded.read_text().replace("device: auto", "device: cuda"))
    assert main(["mner", "eval", str(tmp_path / "run")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["mner", "eval", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "run" / "metrics_test.json").read_text())["test"]
