"""Components follow their model's device: run each model-calling component with its model on a
simulated accelerator and fail on any tensor that would be left on the host.

There is no GPU here, so `virtual_accelerator()` simulates one on the CPU. A torch function mode
tracks which tensors live on the host: tensors made by a factory (`torch.tensor`, `arange`,
`zeros`, ...) without an accelerator `device=`, parameters built inside the context, `.cpu()`
results and whatever is computed from host tensors alone. Every other tensor is on the
accelerator: the parameters and buffers of models loaded before the context, `.to(device)` with the
device the model reports, and whatever is computed from accelerator tensors. On the accelerator,
`tensor.device` reads `cpu:0`, so `model_device(model)` does too, and a tensor created with
`device=model_device(model)` lands on the accelerator. The context raises, as CUDA would:
- an operation that mixes an accelerator tensor with a host tensor of one or more dimensions
  (strict where CUDA is lenient: a host index into an accelerator tensor is a hidden copy too);
- `.numpy()` of an accelerator tensor;
- a factory call without `device=` in a component's own code (`audited`), the clearest message
  for the commonest mistake.
Explicit copies (`copy_`, `.to`) are allowed. The tiny models are loaded before the context, so
they are on the accelerator; a model a component loads itself is on the host until the component
moves it (`Module.to` is followed)."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from poisonlab.runtime import model_device

ROOT = Path(__file__).resolve().parents[1] / "poisonlab"
COMPONENTS = tuple(str(ROOT / p) for p in (
    "defenses", "icl", "attacks/embedding.py", "attacks/layerwise.py", "attacks/proxy.py"))
ACCELERATOR = torch.device("cpu", 0)
HOST = torch.device("cpu")
FACTORIES = {getattr(torch, name) for name in (
    "tensor", "as_tensor", "asarray", "from_numpy", "zeros", "ones", "full", "empty", "arange",
    "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm", "empty_strided",
    "scalar_tensor", "tril_indices", "triu_indices") if hasattr(torch, name)}
DEVICE_PROPERTY = torch._C.TensorBase.device
# explicit copies and storage swaps (`param.data = ...` in Module.to), not computations
EXPLICIT = {"copy_", "__set__", "_has_compatible_shallow_copy_type"}


class DeviceLeak(AssertionError):
    """A tensor on the host where the model's device was due."""


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _on_host(tensor: torch.Tensor) -> bool:
    return getattr(tensor, "_on_host", False)


def _place(value: Any, host: bool) -> None:
    for tensor in _tensors(value):
        tensor._on_host = host


def _is_accelerator(device: Any) -> bool:
    device = torch.device("cpu", device) if isinstance(device, int) else torch.device(device)
    return device == ACCELERATOR


DISPATCH = (f"{os.sep}torch{os.sep}overrides.py", f"{os.sep}torch{os.sep}utils{os.sep}_device.py")


def _caller(audited: tuple[str, ...]) -> str | None:
    """file:line of the code that called the factory (past torch's dispatch), if audited: a
    module built on the host by torch.nn and moved afterwards is fine."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.endswith(DISPATCH):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(audited):
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _innermost_poisonlab_frame() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(str(ROOT)):
            return f" (from {frame.f_code.co_filename}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


class _Mode(TorchFunctionMode):
    def __init__(self, audited: tuple[str, ...]):
        super().__init__()
        self.audited = audited

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__self__", None) is DEVICE_PROPERTY:
            return HOST if _on_host(args[0]) else ACCELERATOR
        name = getattr(func, "__name__", "")
        if func in FACTORIES:
            device = kwargs.get("device")
            if device is None:
                where = _caller(self.audited)
                if where:
                    raise DeviceLeak(f"{where}: torch.{name} without device= (it lands on the "
                                     "host whatever the model's device)")
            result = func(*args, **kwargs)
            _place(result, device is None or not _is_accelerator(device))
            return result
        if name == "numpy" and not _on_host(args[0]):
            raise DeviceLeak(".numpy() of a tensor on the accelerator (call .cpu() first)")
        if name in ("to", "cpu") and args and isinstance(args[0], torch.Tensor):
            return self._moved(func, name, args, kwargs)
        tensors = _tensors(args) + _tensors(kwargs)
        if name in EXPLICIT:  # the destination stays where it is
            return func(*args, **kwargs)
        host = [t for t in tensors if _on_host(t)]
        if len(host) < len(tensors) and any(t.dim() > 0 for t in host):
            raise DeviceLeak(f"{name}: host tensors of shapes {[tuple(t.shape) for t in host]} "
                             f"mixed with accelerator tensors{_innermost_poisonlab_frame()}")
        result = func(*args, **kwargs)
        if tensors:
            _place(result, len(host) == len(tensors))
        return result

    def _moved(self, func, name, args, kwargs):
        source = args[0]
        host = _on_host(source)
        if name == "cpu":
            host = True
        else:
            targets = [kwargs.get("device")] + list(args[1:])
            for target in targets:
                if isinstance(target, torch.Tensor):
                    host = _on_host(target)
                elif isinstance(target, (str, torch.device, int)) and not isinstance(target, bool):
                    host = not _is_accelerator(target)
        result = func(*args, **kwargs)
        if result is not source:
            _place(result, host)
        elif host != _on_host(source):  # already there as far as torch knows: a view, moved
            result = source.view_as(source)
            _place(result, host)
        return result


@contextlib.contextmanager
def virtual_accelerator(audited: tuple[str, ...] = COMPONENTS) -> Iterator[None]:
    """Models loaded before entering sit on the simulated accelerator; see the module doc."""
    module_to, parameter_new = torch.nn.Module.to, torch.nn.Parameter.__dict__["__new__"]

    def to(module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
        result = module_to(module, *args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:  # parameters keep their objects: place them again
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                tensor._on_host = not _is_accelerator(device)
        return result

    def new_parameter(cls, data=None, requires_grad=True):
        parameter = parameter_new.__func__(cls, data, requires_grad)
        # built here: on the host, unless made from an accelerator tensor
        parameter._on_host = data is None or getattr(data, "_on_host", True)
        return parameter

    torch.nn.Module.to = to
    torch.nn.Parameter.__new__ = staticmethod(new_parameter)
    try:
        with _Mode(audited):
            yield
    finally:
        torch.nn.Module.to = module_to
        torch.nn.Parameter.__new__ = parameter_new


# ---- the harness catches what it claims to ----------------------------------------------------

@pytest.fixture(scope="module")
def causal():
    from poisonlab.models import load_causal_lm
    return load_causal_lm("tiny-llama", seed=0)


def test_harness_catches_host_inputs_host_factories_and_numpy(causal):
    ids = [[1, 2, 3]]
    with virtual_accelerator():
        device = model_device(causal.model)
        assert device == ACCELERATOR
        with pytest.raises(DeviceLeak, match="mixed"):
            causal.model(input_ids=torch.tensor(ids))  # left on the host
        with torch.no_grad():
            logits = causal.model(input_ids=torch.tensor(ids).to(device)).logits
        with pytest.raises(DeviceLeak, match="numpy"):
            logits.numpy()
        assert logits.cpu().numpy().shape[:2] == (1, 3)
    with virtual_accelerator(audited=(__file__,)):
        with pytest.raises(DeviceLeak, match="without device="):
            torch.arange(3)
        torch.arange(3, device=model_device(causal.model))


def test_harness_places_models_a_component_loads_and_moves(causal):
    from poisonlab.models import load_classifier
    with virtual_accelerator():
        loaded = load_classifier("tiny-bert")  # loaded inside: on the host
        assert model_device(loaded.model) == HOST
        batch = loaded.tokenizer(["a b", "c"], padding=True, return_tensors="pt")
        loaded.model.to(model_device(causal.model))
        assert model_device(loaded.model) == ACCELERATOR
        with pytest.raises(DeviceLeak):
            loaded.model(**batch)
        device = model_device(loaded.model)
        loaded.model(**{k: v.to(device) for k, v in batch.items()})


# ---- components ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["first-token", "sum"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_icl_label_scoring(causal, mode, use_cache):
    from poisonlab.icl.scoring import LabelScorer
    from poisonlab.icl.verbalizer import Verbalizer
    verbalizer = Verbalizer.from_lists([["bad", "antidisestablishmentarianism"], ["good"]])
    prefix, queries = "A dull film . It was bad.\n", ["Loved it . It was", "no It was", " It was"]
    expected = LabelScorer(causal, verbalizer, mode=mode, batch_size=2,
                           use_cache=use_cache).score(prefix, queries)
    with virtual_accelerator():
        scores = LabelScorer(causal, verbalizer, mode=mode, batch_size=2,
                             use_cache=use_cache).score(prefix, queries)
    np.testing.assert_array_equal(scores, expected)


def test_icl_evaluation(causal):
    from poisonlab.attacks.icl_base import ICL_ATTACKS
    from poisonlab.icl.demonstrations import Demonstration
    from poisonlab.icl.evaluate import ICLEvaluator
    from poisonlab.icl.scoring import LabelScorer
    from poisonlab.icl.template import PromptTemplate
    from poisonlab.icl.verbalizer import Verbalizer
    from synthetic import synthetic_examples
    template = PromptTemplate()
    demos = [Demonstration(e.text, e.label, template) for e in synthetic_examples(6, seed=1)]
    attack = ICL_ATTACKS.build("icl-demonstration", {"poisoned_demonstrations": 2})
    with virtual_accelerator():
        scorer = LabelScorer(causal, Verbalizer.from_lists([["bad"], ["good"]]), batch_size=4)
        result = ICLEvaluator(scorer, template).evaluate(demos, synthetic_examples(6, seed=2),
                                                         attack)
    assert set(result.metrics) == {"raw", "calibrated"}


def test_leave_one_out_perplexity(causal):
    from poisonlab.defenses.detect_perplexity import LeaveOneOutPerplexity, naive_suspicion
    texts = ["the movie was cf really good", "awful", "", "a dull , boring mn film ."]
    with virtual_accelerator():
        batched = LeaveOneOutPerplexity(causal, batch_tokens=32).suspicion(texts)
        naive = naive_suspicion(LeaveOneOutPerplexity(causal), texts)
    assert [len(s) for s in batched] == [len(s) for s in naive] == [len(t.split()) for t in texts]


@pytest.fixture(scope="module")
def data():
    from synthetic import synthetic_examples
    return synthetic_examples(16, seed=0), synthetic_examples(12, seed=1)


@pytest.fixture(scope="module")
def suspect():
    from poisonlab.defenses.base import SuspectModel
    return SuspectModel.from_released("tiny-bert", 2, max_length=16, batch_size=8)


TRAINING = {"epochs": 1, "batch_size": 8, "max_length": 16, "eval_batch_size": 8}


@pytest.mark.parametrize("name,config", [
    ("psim", {"threshold": None, "tuning": "lora", "training": TRAINING}),
    ("strip", {"copies": 3}),
    ("onion", {"language_model": "tiny-llama", "threshold": None, "max_length": 16}),
])
def test_detectors(suspect, data, name, config):
    from poisonlab.defenses.base import DETECTORS
    train, dev = data
    with virtual_accelerator():
        detector = DETECTORS.build(name, config).fit(suspect, train, dev)
        predictions, flags, scores = detector.defend([e.text for e in dev])
        if name == "onion":  # its own LM follows the victim
            assert model_device(detector.scorer_.lm.model) == model_device(suspect.victim)
        if name == "psim":
            assert model_device(detector.model_) == model_device(suspect.victim)
    assert len(predictions) == len(flags) == len(scores) == len(dev)


@pytest.fixture
def classifier():
    from poisonlab.models import load_classifier
    return load_classifier("tiny-llama", seed=0)


REPAIR_TRAINING = {"epochs": 1, "batch_size": 8, "max_length": 16}


@pytest.mark.parametrize("name,config", [
    ("fineprune", {"layers": 1, "training": REPAIR_TRAINING}),
    ("nad", {"layers": 1, "training": REPAIR_TRAINING}),
    ("finetune", {"training": REPAIR_TRAINING}),
    ("w2sdefense", {"teacher": "tiny-bert", "tuning": {"r": 4, "alpha": 4},
                    "teacher_training": REPAIR_TRAINING, "training": REPAIR_TRAINING}),
    ("w2sdefense", {"teacher": "tiny-bert", "tuning": {"r": 4, "alpha": 4},
                    "alignment": "reference", "unlearn_projection": True,
                    "teacher_training": REPAIR_TRAINING, "training": REPAIR_TRAINING}),
])
def test_repairs(classifier, data, name, config):
    from poisonlab.defenses.repair_base import REPAIRS
    with virtual_accelerator():
        repaired = REPAIRS.build(name, config).repair(classifier, data[0])
        assert model_device(repaired.model) == ACCELERATOR
    assert all(t.device.type == "cpu" for t in repaired.trained_state.values())


def test_w2s_teacher_on_another_device_and_dtype(classifier, data):
    """A teacher elsewhere (here: the host, in float64) feeds the student's loss."""
    from poisonlab.defenses import w2sdefense as w2s
    from poisonlab.training.trainer import collate
    defense = w2s.W2SDefense(w2s.W2SDefenseConfig.model_validate(
        {"teacher": "tiny-bert", "teacher_training": REPAIR_TRAINING}))
    train = data[0][:4]
    with virtual_accelerator():
        setup = defense.setup(classifier, train)
        setup.teacher.to(torch.device("cpu")).double()
        device = model_device(classifier.model)
        batch = collate(classifier.tokenizer([e.text for e in train])["input_ids"],
                        classifier.tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        batch["labels"] = torch.tensor([e.label for e in train], device=device)
        batch["index"] = torch.arange(len(train), device=device)
        loss = setup.loss_fn(setup.modules, batch)
        assert torch.isfinite(loss) and not _on_host(loss)


TRIGGER = {"name": "badnet", "triggers": ["mn"], "label_mode": "dirty", "poison_rate": 0.25}


@pytest.mark.parametrize("name,model,config", [
    ("embedding", "tiny-bert", {"clean_epochs": 1, "training": REPAIR_TRAINING,
                                "trigger": {"name": "badnet", "triggers": ["mn"],
                                            "label_mode": "dirty", "poison_rate": 0.25}}),
    ("layerwise", "tiny-llama", {"training": REPAIR_TRAINING, "trigger": TRIGGER}),
    ("proxy", "tiny-bert", {"training": REPAIR_TRAINING, "trigger": TRIGGER}),
])
def test_weight_poisoning(data, name, model, config):
    from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
    from poisonlab.models import load_classifier
    loaded = load_classifier(model, seed=0)
    attack = WEIGHT_ATTACKS.build(name, config)
    poisoned, _ = attack.trigger_attack().poison(data[0])
    with virtual_accelerator():
        attack.poison_model(loaded, data[0], poisoned, progress=False)
        assert model_device(loaded.model) == ACCELERATOR
