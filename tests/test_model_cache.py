"""ModelCache: bounded and least-recently-used; the only way components share models (PSIM's
module, ONION's language model, W2SDefense's teacher), and only when the caller passes one (a
study run passes one to every cell)."""

import pytest

from poisonlab.defenses import psim as psim_module
from poisonlab.defenses import w2sdefense as w2s
from poisonlab.defenses.base import DETECTORS, SuspectModel
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.models.cache import ModelCache
from synthetic import synthetic_examples, synthetic_splits, write_jsonl_split

PSIM = {"threshold": 0.7, "tuning": "lora",
        "training": {"epochs": 1, "learning_rate": 3e-3, "max_length": 16}}
TEACHER = {"teacher": "tiny-bert", "teacher_training": {"epochs": 1, "learning_rate": 1e-3,
                                                        "max_length": 16}}


def test_cache_is_bounded_and_least_recently_used():
    cache = ModelCache(max_entries=2)
    made = []

    def make(value):
        return lambda: made.append(value) or value

    assert cache.get_or_make("a", make("A")) == "A"
    assert cache.get_or_make("b", make("B")) == "B"
    assert cache.get_or_make("a", make("other")) == "A"  # a hit makes "a" the most recent
    assert cache.get_or_make("c", make("C")) == "C"      # full: evicts "b", the least recent
    assert len(cache) == 2 and "a" in cache and "c" in cache and "b" not in cache
    assert cache.get_or_make("b", make("B2")) == "B2"    # made again
    assert made == ["A", "B", "C", "B2"] and (cache.hits, cache.misses) == (1, 4)
    with pytest.raises(ValueError):
        ModelCache(max_entries=0)


def test_a_failed_make_stores_nothing():
    cache = ModelCache()

    def fail():
        raise RuntimeError("load failed")

    with pytest.raises(RuntimeError):
        cache.get_or_make("k", fail)
    assert "k" not in cache and cache.get_or_make("k", lambda: 1) == 1


@pytest.fixture
def psim_trainings(monkeypatch):
    """Counts PSIM's trainings."""
    calls = []
    real = psim_module.train_classifier

    def counting(*args, **kwargs):
        calls.append(kwargs.get("description"))
        return real(*args, **kwargs)
    monkeypatch.setattr(psim_module, "train_classifier", counting)
    return calls


def test_psim_detectors_share_a_module_only_through_a_cache(psim_trainings):
    suspect = SuspectModel.from_released("tiny-bert", 2, max_length=16)
    train = synthetic_examples(32)
    alone = [DETECTORS.build("psim", PSIM).fit(suspect, train) for _ in range(2)]
    assert alone[0].model_ is not alone[1].model_ and len(psim_trainings) == 2

    cache = ModelCache()
    first = DETECTORS.build("psim", PSIM).fit(suspect, train, cache=cache)
    # the threshold is not part of what PSIM learns, so a detector that differs only there
    # reuses the module and trains nothing
    second = DETECTORS.build("psim", {**PSIM, "threshold": 0.9}).fit(suspect, train, cache=cache)
    assert second.model_ is first.model_ and len(psim_trainings) == 3
    assert second.threshold_ == 0.9 and first.threshold_ == 0.7
    # anything PSIM learns from is part of the key: another seed or other data trains again
    other_seed = DETECTORS.build("psim", {**PSIM, "seed": 1}).fit(suspect, train, cache=cache)
    other_data = DETECTORS.build("psim", PSIM).fit(suspect, train[:16], cache=cache)
    assert len(psim_trainings) == 5
    assert len({id(d.model_) for d in (first, other_seed, other_data)}) == 3
    # weights without a name are never shared
    unnamed = SuspectModel(suspect.victim, suspect.tokenizer, 2, suspect.load_weights,
                           max_length=16)
    DETECTORS.build("psim", PSIM).fit(unnamed, train, cache=cache)
    DETECTORS.build("psim", PSIM).fit(unnamed, train, cache=cache)
    assert len(psim_trainings) == 7


def test_onion_detectors_share_a_language_model_only_through_a_cache():
    params = {"language_model": "tiny-llama", "max_length": 16}
    alone = [DETECTORS.build("onion", params).fit(None, []) for _ in range(2)]
    assert alone[0].scorer_ is not alone[1].scorer_
    cache = ModelCache()
    shared = [DETECTORS.build("onion", params).fit(None, [], cache=cache) for _ in range(2)]
    assert shared[0].scorer_ is shared[1].scorer_ and len(cache) == 1
    other = DETECTORS.build("onion", {**params, "max_length": 24}).fit(None, [], cache=cache)
    assert other.scorer_ is not shared[0].scorer_


@pytest.fixture
def teacher_trainings(monkeypatch):
    """Counts W2SDefense's teacher trainings."""
    calls = []
    real = w2s.train_classifier

    def counting(*args, **kwargs):
        if kwargs.get("description") == "w2s teacher":
            calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(w2s, "train_classifier", counting)
    return calls


def test_w2s_teacher_is_trained_per_call_without_a_cache(teacher_trainings):
    config = REPAIRS.build("w2sdefense", TEACHER).config
    train = synthetic_examples(16)
    first, _ = w2s.train_teacher(config, 32, 2, train)
    second, _ = w2s.train_teacher(config, 32, 2, train)
    assert first is not second and len(teacher_trainings) == 2
    cache = ModelCache()
    cached = [w2s.train_teacher(config, 32, 2, train, cache=cache)[0] for _ in range(2)]
    assert len(teacher_trainings) == 3
    # each caller gets its own copy (unlearning may train the projection), of equal weights
    assert cached[0] is not cached[1]
    assert all((a == b).all() for a, b in zip(cached[0].state_dict().values(),
                                              cached[1].state_dict().values()))


def test_w2s_teacher_is_reused_through_the_cache_of_one_study(tmp_path, teacher_trainings):
    from poisonlab.studies import run_study
    from poisonlab.studies.runner import StudyConfig
    data = write_jsonl_split(tmp_path / "data", synthetic_splits(n_train=96, n_test=32))
    study = StudyConfig(
        name="w2s", pipeline="repair", output_dir=str(tmp_path / "studies"),
        base={"victim_name": "victim", "defender_data": {"name": str(data)},
              "victim": {"model": {"name": "tiny-llama"}, "tuning": {"name": "full"},
                         "data": {"name": str(data)},
                         "attack": {"name": "badnet", "target_label": 0, "poison_rate": 0.2},
                         "training": {"epochs": 1, "max_length": 16},
                         "eval_every_epoch": False},
              "repair_defaults": {"tuning": {"name": "lora", "r": 4, "alpha": 8},
                                  "training": {"epochs": 1, "max_length": 16}},
              "repair_extra": {"w2sdefense": TEACHER}},
        axes={"defense": {"w2s": {"repair": {"name": "w2sdefense"}},
                          "finetune": {"repair": {"name": "finetune"}},
                          "w2s-kd": {"repair": {"name": "w2sdefense", "b": 1.0}}}})
    rows = run_study(study, progress=False)
    assert [r["repair"] for r in rows] == ["w2sdefense", "finetune", "w2sdefense"]
    assert len(teacher_trainings) == 1


def test_psim_module_is_shared_by_the_cells_of_one_detection_study(tmp_path, psim_trainings):
    from poisonlab.experiment import load_run_config, run_experiment
    from poisonlab.studies import run_study
    from poisonlab.studies.runner import StudyConfig
    data = write_jsonl_split(tmp_path / "data", synthetic_splits(n_train=64, n_test=32))
    run = load_run_config(base={
        "name": "victim", "data": {"name": str(data)}, "model": {"name": "tiny-bert"},
        "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
        "training": {"epochs": 1, "max_length": 16}, "eval_every_epoch": False,
        "output_dir": str(tmp_path / "runs")})
    run_experiment(run, progress=False)
    study = StudyConfig(name="detect", pipeline="detection", output_dir=str(tmp_path / "studies"),
                        base={"victim": str(run.run_dir), "defense": {"name": "psim", **PSIM}},
                        axes={"test": {"all": {}, "half": {"data": {"test_size": 16}}}})
    rows = run_study(study, progress=False)
    assert len(rows) == 2 and len(psim_trainings) == 1
