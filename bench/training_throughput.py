"""Training throughput: poisonlab's trainer vs a minimal hand-written PyTorch loop.

Same model (fresh copy from the same seed), same examples, batch size, sequence length and
optimizer, measured in one process; the two are interleaved over several rounds and each keeps
its best round, so a noisy neighbour on the CPU hurts both alike. Target: ratio >= 0.9.

    python bench/training_throughput.py [--model minilm] [--examples 320] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.models import load_classifier  # noqa: E402
from poisonlab.training import TrainingConfig, train_classifier  # noqa: E402


def hand_written_loop(model, tokenizer, examples, batch_size: int, max_length: int,
                      lr: float) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = tokenizer([e.text for e in batch], padding=True, truncation=True,
                           max_length=max_length, return_tensors="pt")
        labels = torch.tensor([e.label for e in batch])
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    examples = load_dataset("movie-snippets").train[:args.examples]
    config = TrainingConfig(epochs=1, batch_size=args.batch_size, max_length=args.max_length,
                            learning_rate=2e-5, warmup_ratio=0.0, grad_clip=None)
    best = {"hand-written loop": 0.0, "poisonlab": 0.0}
    for _ in range(args.rounds):
        for name in best:
            loaded = load_classifier(args.model, 2, seed=0)
            started = time.perf_counter()
            if name == "poisonlab":
                train_classifier(loaded.model, loaded.tokenizer, examples, config, progress=False)
            else:
                hand_written_loop(loaded.model, loaded.tokenizer, examples, args.batch_size,
                                  args.max_length, config.learning_rate)
            best[name] = max(best[name], len(examples) / (time.perf_counter() - started))
    for name, rate in best.items():
        print(f"{name:<18} {rate:7.1f} examples/s")
    ratio = best["poisonlab"] / best["hand-written loop"]
    print(f"ratio poisonlab / hand-written: {ratio:.2f}x (target >= 0.9x; model {args.model}, "
          f"batch {args.batch_size}, {args.max_length} tokens, {len(examples)} examples, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
