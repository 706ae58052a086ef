"""Training and prediction through a Runtime: several processes, gradient accumulation, bf16
autocast and gradient checkpointing train as the plain loop does, and a device that is not here
is refused before anything is written.

Measured (tiny BERT without dropout, CPU, fp32), largest difference of any trained weight:
- two gloo processes with batch 8 vs one with batch 16, 32 optimizer steps: 4e-5 (asserted
  < 2e-4; Adam turns float-rounding differences of tiny gradients into updates of up to the
  learning rate), epoch losses 5e-8 (asserted < 1e-6), identical predictions and CA/ASR;
- accumulation 2 x 8 vs one batch of 16, 10 steps: 4e-7 (asserted < 1e-5; batch 8 without
  accumulation differs by 4e-2);
- gradient checkpointing vs none (dropout on): 0 (asserted < 1e-6)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from poisonlab.cli import main
from poisonlab.errors import ConfigError
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.rundir import RunSlot
from poisonlab.models import load_classifier
from poisonlab.runtime import Runtime, RuntimeConfig
from poisonlab.training import TrainingConfig, predict_logits, train_classifier
from synthetic import synthetic_examples


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory) -> Path:
    """tiny-bert saved with dropout off: different batch splits then compute the same function
    (dropout masks depend on the batch shape, so they would differ)."""
    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    loaded = load_classifier("tiny-bert", 2, seed=0)
    config = loaded.model.config
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def run_values(synthetic_dir, tmp_path, model, **overrides):
    values = {"name": "run", "seed": 0,
              "data": {"name": str(synthetic_dir), "train_size": 128, "test_size": 41},
              "model": {"name": str(model)},
              "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
              "tuning": {"name": "full"},
              "training": {"epochs": 4, "learning_rate": 5e-3, "max_length": 16,
                           "batch_size": 8},
              "eval_every_epoch": False, "runtime": {"device": "cpu"},
              "output_dir": str(tmp_path / "runs")}
    values.update(overrides)
    return values


def test_two_processes_train_as_one_process_with_the_global_batch(synthetic_dir, tmp_path,
                                                                   bert_without_dropout):
    values = run_values(synthetic_dir, tmp_path, bert_without_dropout, name="two")
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(values))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    launch = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "poisonlab.cli", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    one = run_experiment(load_run_config(base=run_values(
        synthetic_dir, tmp_path, bert_without_dropout, name="one",
        training={**values["training"], "batch_size": 16})), progress=False)
    _, err = launch.communicate(timeout=300)
    assert launch.returncode == 0, err[-3000:]

    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [".one.lock", ".two.lock", "one", "two"]
    two = json.loads((runs / "two/metrics.json").read_text())
    assert json.loads((runs / "two/environment.json").read_text())["world_size"] == 2
    assert (two["clean_accuracy"], two["attack_success_rate"]) == (
        one["clean_accuracy"], one["attack_success_rate"])
    assert one["clean_accuracy"] > 0.9  # a task that was learnt, not a constant prediction
    for a, b in zip(two["history"], one["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    read = lambda name, file: (runs / name / file).read_text()
    assert read("two", "predictions.jsonl") == read("one", "predictions.jsonl")
    from safetensors.torch import load_file
    weights = [load_file(str(runs / name / "trained.safetensors")) for name in ("two", "one")]
    assert largest_difference(*weights) < 2e-4


def test_accumulating_two_batches_of_8_trains_as_one_batch_of_16():
    examples = synthetic_examples(72, seed=5)  # 4.5 steps of 16: the last step is a single 8
    config = TrainingConfig(epochs=2, batch_size=16, learning_rate=3e-3, max_length=16)
    trained = {}
    for name, batch_size, steps in (("16", 16, 1), ("2x8", 8, 2), ("8", 8, 1)):
        loaded = load_classifier("tiny-bert", 2, seed=0)
        runtime = Runtime(RuntimeConfig(gradient_accumulation_steps=steps))
        train_classifier(no_dropout(loaded.model), loaded.tokenizer, examples,
                         config.model_copy(update={"batch_size": batch_size}), progress=False,
                         runtime=runtime)
        trained[name] = loaded.model.state_dict()
    assert largest_difference(trained["16"], trained["2x8"]) < 1e-5
    assert largest_difference(trained["16"], trained["8"]) > 1e-3  # the test can tell


def test_bf16_autocast_on_the_cpu_trains_and_is_recorded(synthetic_dir, tmp_path):
    values = run_values(synthetic_dir, tmp_path, "tiny-bert",
                        training={"epochs": 3, "learning_rate": 5e-3, "max_length": 16},
                        runtime={"mixed_precision": "bf16"})
    path = tmp_path / "bf16.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["run", str(path), "--quiet"]) == 0
    folder = tmp_path / "runs/run"
    losses = [h["loss"] for h in json.loads((folder / "metrics.json").read_text())["history"]]
    assert losses[-1] < losses[0]
    environment = json.loads((folder / "environment.json").read_text())
    assert environment["runtime"]["mixed_precision"] == "bf16"

    # the forward really runs in bf16 (and fp32 after the runtime goes)
    loaded = load_classifier("tiny-bert", 2, seed=0)
    seen = []
    loaded.model.classifier.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    train_classifier(loaded.model, loaded.tokenizer, synthetic_examples(16), TrainingConfig(
        epochs=1, max_length=16), progress=False, runtime=Runtime(RuntimeConfig(
            mixed_precision="bf16")))
    predict_logits(loaded.model, loaded.tokenizer, ["a fine film"])
    assert seen == [torch.bfloat16, torch.float32]


def test_gradient_checkpointing_gives_the_same_training():
    examples = synthetic_examples(48, seed=3)
    config = TrainingConfig(epochs=2, batch_size=16, learning_rate=3e-3, max_length=16)
    results = []
    for checkpointing in (False, True):
        loaded = load_classifier("tiny-bert", 2, seed=0)  # dropout on: checkpointing replays it
        layer_calls = []  # a module inside a layer: the backward's recomputation calls it again
        loaded.model.bert.encoder.layer[0].intermediate.register_forward_hook(
            lambda *args, calls=layer_calls: calls.append(1))
        history = train_classifier(
            loaded.model, loaded.tokenizer, examples, config, progress=False,
            runtime=Runtime(RuntimeConfig(gradient_checkpointing=checkpointing)))
        results.append((history, loaded.model.state_dict(), len(layer_calls)))
        assert not loaded.model.is_activation_checkpointing  # turned off after training
    (plain, plain_weights, plain_calls), (checked, checked_weights, checked_calls) = results
    assert checked_calls == 2 * plain_calls == 2 * 6  # the backward recomputed every layer
    for a, b in zip(plain, checked):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert largest_difference(plain_weights, checked_weights) < 1e-6


def test_gradient_checkpointing_of_a_model_without_it_is_a_config_error():
    model = torch.nn.Linear(4, 2)
    tokenizer = load_classifier("tiny-bert", 2).tokenizer
    with pytest.raises(ConfigError, match="does not support gradient checkpointing"):
        train_classifier(model, tokenizer, synthetic_examples(4), TrainingConfig(epochs=1),
                         loss_fn=lambda m, b: m(torch.ones(len(b["labels"]), 4)).sum(),
                         progress=False,
                         runtime=Runtime(RuntimeConfig(gradient_checkpointing=True)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_runtime_without_cuda_exits_2_and_writes_nothing(synthetic_dir, tmp_path,
                                                                 capsys):
    path = tmp_path / "cuda.yaml"
    path.write_text(yaml.safe_dump(run_values(synthetic_dir, tmp_path, "tiny-bert")))
    assert main(["run", str(path), "--quiet", "--set", "runtime.device=cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runtime.device" in err and "cuda" in err, err
    assert not (tmp_path / "runs").exists()


class OtherProcess:
    """A non-main process of a two-process job, told `decisions` by the main one, in turn."""

    distributed, num_processes, process_index, is_main_process = True, 2, 1, False

    def __init__(self, *decisions):
        self.decisions = list(decisions)

    def broadcast(self, value):
        assert value is None  # only the main process has something to say
        return self.decisions.pop(0)

    def wait_for_everyone(self):
        pass

    def describe(self):
        raise AssertionError("a non-main process records no environment")


def test_a_non_main_process_locks_and_writes_nothing(tmp_path):
    slot = RunSlot(tmp_path / "runs/run", {"seed": 0}, kind="train",
                   runtime=OtherProcess(("decided", None), None))
    assert slot.reusable() is None
    with slot.building() as run:
        assert not run.writes
        run.log("epoch 1")
        run.write_predictions("predictions", [{"prediction": 1}])
        run.write_weights({"w": torch.zeros(1)})
        run.finish({"clean_accuracy": 0.5})
        assert run.read_metrics()["clean_accuracy"] == 0.5
    assert not (tmp_path / "runs").exists()


def test_every_process_follows_the_main_process_decision(tmp_path):
    finished = {"clean_accuracy": 1.0}
    slot = RunSlot(tmp_path / "run", {}, kind="train", runtime=OtherProcess(("decided", finished)))
    assert slot.reusable() == finished
    refused = RunSlot(tmp_path / "run", {}, kind="train",
                      runtime=OtherProcess(("failed", ConfigError("stale run"))))
    with pytest.raises(ConfigError, match="stale run"):
        refused.reusable()
    locked = RunSlot(tmp_path / "run", {}, kind="train",
                     runtime=OtherProcess(ConfigError("another process is writing")))
    with pytest.raises(ConfigError, match="another process"), locked.building():
        pass
    assert not (tmp_path / "run").exists()


def test_runtimes_of_different_precision_take_turns_in_one_process():
    """accelerate keeps one state per process; a study runs cells of several precisions."""
    fp32, bf16 = Runtime().check(), Runtime(RuntimeConfig(mixed_precision="bf16")).check()
    layer = torch.nn.Linear(2, 2)
    for runtime, dtype in ((fp32, torch.float32), (bf16, torch.bfloat16), (fp32, torch.float32)):
        with runtime.autocast():
            assert layer(torch.ones(1, 2)).dtype == dtype
        assert runtime.describe()["mixed_precision"] == {torch.float32: "no"}.get(dtype, "bf16")


def test_prediction_batches_hold_little_padding_and_every_text_once():
    from poisonlab.training.trainer import MAX_PADDING, length_batches
    lengths = [3, 30, 7, 7, 8, 9, 31, 12, 40, 5] * 7
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = length_batches(order, lengths, 16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 16
        real = sum(lengths[i] for i in batch)
        assert len(batch) * max(lengths[i] for i in batch) <= (1 + MAX_PADDING) * real
