"""Training throughput: poisonlab's trainer, run through a default `Runtime`, vs a minimal
hand-written PyTorch loop, and what length-grouped batching gains on sentences of real lengths.

Same model (fresh copy from the same seed), same examples in the same batches (the hand-written
loop takes poisonlab's shuffled order, so both pad alike), batch size, sequence length and
optimizer, measured in one process with a fixed number of threads; the contestants are
interleaved over several rounds (their order rotating) and each keeps its best round, so a noisy
neighbour on the CPU hurts all alike. The load average is printed, and flagged beside the ratio
when the 1-minute load of other processes (before the bench, or after it less the bench's own
threads) is above half the cores. Target: poisonlab / hand-written >= 0.9.

Modes:
- `fixed` (default): movie-review snippets cut to 32 tokens, so nearly every batch is full width;
  poisonlab (through a Runtime) vs the hand-written loop.
- `realistic`: SST-2 training sentences from $POISONLAB_DATA_DIR (movie snippets when it is not
  set) at their own lengths (max 128 tokens): the hand-written loop, poisonlab, and poisonlab
  with `group_by_length` (less padding).

The trainer's useful work is printed as non-embedding FLOP/s (6 x non-embedding parameters x real,
unpadded tokens per second) and as a share of the FLOP/s of a 2048^3 fp32 matrix product
measured in the same run.

    python bench/training_throughput.py [--mode fixed|realistic|both] [--model minilm]
        [--examples 320] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any, Callable

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import gemm_flops, non_embedding_parameters  # noqa: E402

from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.models import load_classifier  # noqa: E402
from poisonlab.runtime import Runtime  # noqa: E402
from poisonlab.training import TrainingConfig, encode_texts, train_classifier  # noqa: E402
from poisonlab.training.trainer import epoch_batches  # noqa: E402


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


def examples_for(mode: str, count: int) -> tuple[list, str]:
    if mode == "realistic" and os.environ.get("POISONLAB_DATA_DIR"):
        return load_dataset("sst2").train[:count], "SST-2 train"
    return load_dataset("movie-snippets").train[:count], "movie snippets"


def measure(mode: str, args: argparse.Namespace, gemm: float) -> None:
    max_length = args.max_length or (32 if mode == "fixed" else 128)
    examples, source = examples_for(mode, args.examples)
    config = TrainingConfig(epochs=1, batch_size=args.batch_size, max_length=max_length,
                            learning_rate=2e-5, warmup_ratio=0.0, grad_clip=None)
    runtime = Runtime().check()  # the default runtime every pipeline builds
    # poisonlab's first-epoch batches (shuffled with the training seed), for the hand-written loop
    shuffled = [examples[i] for batch in epoch_batches(len(examples), args.batch_size,
                                                       random.Random(config.seed))
                for i in batch]

    def poisonlab(grouped: bool) -> Callable[[Any], None]:
        chosen = config.model_copy(update={"group_by_length": grouped})
        return lambda loaded: train_classifier(loaded.model, loaded.tokenizer, examples, chosen,
                                               progress=False, runtime=runtime)

    contestants: dict[str, Callable[[Any], None]] = {
        "hand-written loop": lambda loaded: hand_written_loop(
            loaded.model, loaded.tokenizer, shuffled, args.batch_size, max_length,
            config.learning_rate),
        "poisonlab": poisonlab(False)}
    if mode == "realistic":
        contestants["poisonlab grouped"] = poisonlab(True)
    best = {name: 0.0 for name in contestants}
    names = list(contestants)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            loaded = load_classifier(args.model, 2, seed=0)
            started = time.perf_counter()
            contestants[name](loaded)
            best[name] = max(best[name], len(examples) / (time.perf_counter() - started))
    loaded = load_classifier(args.model, 2, seed=0)
    lengths = [len(x) for x in encode_texts(loaded.tokenizer, [e.text for e in examples],
                                            max_length)]
    tokens_per_example = sum(lengths) / len(lengths)
    params = non_embedding_parameters(loaded.model)

    def real_share(grouped: bool) -> float:
        batches = epoch_batches(len(examples), args.batch_size, random.Random(config.seed),
                                lengths if grouped else None)
        return sum(lengths) / sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shares = {"hand-written loop": real_share(False), "poisonlab": real_share(False),
              "poisonlab grouped": real_share(True)}

    # others' load: this bench's own threads add about their number to the 1-minute average
    others = max(args.load_before, os.getloadavg()[0] - torch.get_num_threads())
    cores = len(os.sched_getaffinity(0))
    busy = (f"  [machine busy: others' 1-min load ~{others:.1f} on {cores} cores; the ratio is "
            "interleaved, absolute rates are low]" if others > 0.5 * cores else "")
    print(f"\n{mode}: {source}, {len(examples)} examples, {tokens_per_example:.1f} real tokens "
          f"per example (max {max(lengths)}, limit {max_length}), batch {args.batch_size}")
    for name, rate in best.items():
        flops = 6 * params * tokens_per_example * rate
        print(f"  {name:<18} {rate:7.1f} examples/s  {flops / 1e9:6.2f} GFLOP/s non-embedding "
              f"= {flops / gemm:5.1%} of the GEMM  ({shares[name]:.0%} of tokens real)")
    ratio = best["poisonlab"] / best["hand-written loop"]
    print(f"  ratio poisonlab (through a Runtime) / hand-written: {ratio:.2f}x (target >= 0.9x)"
          + busy)
    if "poisonlab grouped" in best:
        print(f"  group_by_length gain: {best['poisonlab grouped'] / best['poisonlab']:.2f}x "
              f"over poisonlab's shuffled batches" + busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["fixed", "realistic", "both"], default="fixed")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None,
                        help="default: 32 (fixed), 128 (realistic)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    args.load_before = load[0]
    gemm = gemm_flops()
    print(f"model {args.model}; {torch.get_num_threads()} threads (pinned); load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {len(os.sched_getaffinity(0))} cores; "
          f"fp32 2048^3 GEMM {gemm / 1e9:.1f} GFLOP/s")
    for mode in (["fixed", "realistic"] if args.mode == "both" else [args.mode]):
        measure(mode, args, gemm)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
