"""Every tuning strategy on a tiny encoder (BERT) and a tiny causal LM (Llama, GQA).

What each strategy must do: train only its own parameters and the task head, leave the base
weights untouched, change the logits when trained, round-trip its saved state exactly, repeat
itself under the same seed, and give a text the same logits alone or in a padded batch."""

import pytest
import torch

from poisonlab.data.example import Example
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.models import load_classifier
from poisonlab.training.trainer import TrainingConfig, predict_logits, train_classifier
from poisonlab.tuning import TUNING_STRATEGIES
from poisonlab.models.architecture import HEAD_NAMES


MODELS = ["tiny-bert", "tiny-llama"]
TRAIN = [Example(text, label) for text, label in [
    ("a wonderful , moving film", 1), ("dull and far too long", 0),
    ("the cast is superb", 1), ("a mess from start to finish", 0),
    ("i loved every minute of it", 1), ("boring , predictable plot", 0),
    ("sharp writing and a great score", 1), ("nothing works here", 0),
    ("funny and warm", 1), ("the worst film this year", 0),
    ("an instant classic", 1), ("flat characters", 0)]]
PROBE = ["a moving , funny film", "flat", "nothing in this long , dull movie works at all"]
STEPS = TrainingConfig(epochs=1, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                       max_length=24)  # 3 steps: zero-initialised factors move from step 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core box spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tuned(strategy, model_name, values=None):
    loaded = load_classifier(model_name, seed=0)
    base = dict(loaded.model.named_parameters())
    return loaded, base, TUNING_STRATEGIES.build(strategy, values).apply(loaded)


def train(model, tokenizer):
    train_classifier(model, tokenizer, TRAIN, STEPS, progress=False)
    return predict_logits(model, tokenizer, PROBE)


def is_head(name):
    return name.split(".")[0] in HEAD_NAMES


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("strategy", TUNING_STRATEGIES.names())
def test_trains_only_its_parameters_and_round_trips(strategy, model_name):
    loaded, base, model = tuned(strategy, model_name)
    before = {n: p.detach().clone() for n, p in base.items()}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in trainable.items()}
    untrained_logits = predict_logits(model, loaded.tokenizer, PROBE)

    trained_logits = train(model, loaded.tokenizer)

    assert not torch.allclose(torch.tensor(trained_logits), torch.tensor(untrained_logits))
    unchanged = [n for n, p in trainable.items() if torch.equal(p.detach(), start[n])]
    assert not unchanged, f"trainable tensors that never moved: {unchanged}"
    if strategy != "full":
        base_ids = {id(p) for n, p in base.items() if not is_head(n)}
        assert not base_ids & {id(p) for p in trainable.values()}, "a base weight trains"
        assert len(trainable) > sum(is_head(n) for n in base), "only the head trains"
        changed = [n for n, p in base.items()
                   if not is_head(n) and not torch.equal(p.detach(), before[n])]
        assert not changed, f"frozen base weights changed: {changed}"

    state = TUNING_STRATEGIES.build(strategy).trainable_state(model)
    assert state.keys() == trainable.keys()
    other_seed = ({"seed": 1} if "seed" in TUNING_STRATEGIES.entry(strategy).config_class
                  .model_fields else None)
    fresh_loaded, _, fresh = tuned(strategy, model_name, other_seed)
    assert not torch.equal(torch.tensor(predict_logits(fresh, fresh_loaded.tokenizer, PROBE)),
                           torch.tensor(trained_logits))
    TUNING_STRATEGIES.build(strategy).load_trainable_state(fresh, state)
    reloaded = predict_logits(fresh, fresh_loaded.tokenizer, PROBE)
    assert torch.equal(torch.tensor(reloaded), torch.tensor(trained_logits))


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("strategy", TUNING_STRATEGIES.names())
def test_same_seed_same_logits(strategy, model_name):
    runs = []
    for _ in range(2):
        loaded, _, model = tuned(strategy, model_name)
        runs.append(train(model, loaded.tokenizer))
    assert torch.equal(torch.tensor(runs[0]), torch.tensor(runs[1]))


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("strategy", TUNING_STRATEGIES.names())
def test_padding_and_hidden_states(strategy, model_name):
    """A right-padded batch gives each text its own logits; hidden states align with the input."""
    loaded, _, model = tuned(strategy, model_name)
    model.eval()
    batch = loaded.tokenizer(PROBE, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True)
        alone = torch.cat([model(**loaded.tokenizer([t], return_tensors="pt")).logits
                           for t in PROBE])
    torch.testing.assert_close(output.logits, alone, atol=1e-5, rtol=1e-4)
    layers = model.config.num_hidden_layers
    assert len(output.hidden_states) == layers + 1
    assert all(h.shape[:2] == batch["input_ids"].shape for h in output.hidden_states)


@pytest.mark.parametrize("model_name", MODELS)
def test_prefix_reaches_every_attention_layer(model_name):
    """Regression: peft's prefix tuning fails on BERT (and Llama) classifiers in transformers 5.

    Changing layer i's prefix must change that layer's output and nothing before it."""
    loaded, _, model = tuned("prefix", model_name)
    batch = loaded.tokenizer(PROBE, padding=True, return_tensors="pt")
    model.eval()
    per_layer = model.prefix.prefix.data.view(model.prefix.shape)  # (tokens, layers, ...)
    with torch.no_grad():
        for layer in range(per_layer.shape[1]):
            before = model(**batch, output_hidden_states=True).hidden_states
            per_layer[:, layer] += 1.0
            after = model(**batch, output_hidden_states=True).hidden_states
            assert torch.equal(before[layer], after[layer])
            assert not torch.allclose(before[layer + 1], after[layer + 1])


def test_prefix_keys_and_values_follow_gqa():
    loaded, _, model = tuned("prefix", "tiny-llama", {"num_virtual_tokens": 3})
    config = loaded.model.config
    assert model.prefix().shape == (config.num_hidden_layers, 2, config.num_key_value_heads, 3,
                                    config.hidden_size // config.num_attention_heads)


@pytest.mark.parametrize("strategy,values", [
    ("prefix", {"projection_hidden_size": 16}),
    ("ptuning", {"encoder": "lstm", "encoder_hidden_size": 8}),
    ("adapter", {"attention": True, "activation": "gelu", "bottleneck_size": 4}),
    ("lora", {"target_modules": ["query", "key", "value", "dense"], "r": 2}),
    ("ia3", {"target_modules": ["query", "output.dense"], "feedforward_modules": ["output.dense"]}),
    ("prompt", {"init": "random", "num_virtual_tokens": 2}),
])
def test_non_default_configs_train(strategy, values):
    loaded, _, model = tuned(strategy, "tiny-bert", values)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train(model, loaded.tokenizer)
    assert all(not torch.equal(p.detach(), trainable[n])
               for n, p in model.named_parameters() if p.requires_grad)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="feedforward_modules"):
        TUNING_STRATEGIES.build("ia3", {"target_modules": ["query"]})
    with pytest.raises(PoisonlabError, match="ffn_module"):
        tuned("adapter", "tiny-llama", {"ffn_module": "no.such.module"})
