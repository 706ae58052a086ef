"""Benchmark: PSIM defense throughput, batched and length-sorted (ours) vs the reference code's
per-example loop (batch size 1: one PSIM forward, then one victim forward if not flagged), on
the same inputs with the same fitted PSIM module and victim, in one run.

    python bench/psim_throughput.py [--model minilm] [--examples 256] [--rounds 3] [--threads 1]

The two arms alternate over `--rounds` (the order flips every round) and each keeps its best
round; torch's thread count is pinned. Prints the load average, both rates, the ratio (target
>= 3x) in wall-clock time and in this process's CPU time (steadier than the wall clock on a shared
machine when one thread is pinned), with a warning beside it when the machine was busy (a
1-minute load, less this benchmark's threads, above half the cores), and how often the two paths
agree (flags and predictions; padding can move a borderline confidence by ~1e-6)."""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import interleave, load_line, non_embedding_parameters, print_roofline  # noqa: E402

from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.defenses.base import DETECTORS, SuspectModel  # noqa: E402
from poisonlab.runtime import model_device  # noqa: E402




@torch.no_grad()
def per_example(detector, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The reference loop: batch size 1, PSIM first, the victim only for accepted inputs."""
    suspect = detector.suspect_
    device = model_device(suspect.victim)
    flags, predictions = np.zeros(len(texts), bool), np.full(len(texts), -1)
    for i, text in enumerate(texts):
        batch = detector.tokenizer_(text, truncation=True, max_length=suspect.max_length,
                                    return_tensors="pt").to(device)
        confidence = torch.softmax(detector.model_(**batch).logits, -1).max()
        if confidence > detector.threshold_:
            flags[i] = True
            continue
        batch = suspect.tokenizer(text, truncation=True, max_length=suspect.max_length,
                                  return_tensors="pt").to(device)
        predictions[i] = int(suspect.victim(**batch).logits.argmax(-1))
    return predictions, flags


def real_token_flops(detector, texts: list[str], flags: np.ndarray) -> float:
    """Forward FLOPs of both arms without padding: the PSIM module on every input (with its
    virtual tokens), the victim on the accepted ones."""
    suspect = detector.suspect_
    lengths = np.array([len(ids) for ids in detector.tokenizer_(
        texts, truncation=True, max_length=suspect.max_length)["input_ids"]])
    virtual = getattr(detector.config.tuning.config, "num_virtual_tokens", 0) or 0
    return 2.0 * (non_embedding_parameters(detector.model_) * (lengths + virtual).sum()
                  + non_embedding_parameters(suspect.victim) * lengths[~flags].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    texts = [e.text for e in data.test[:args.examples]]
    suspect = SuspectModel.from_released(args.model, data.num_labels, batch_size=args.batch_size)
    detector = DETECTORS.build("psim", {"training": {"epochs": 1, "eval_batch_size":
                                                     args.batch_size}})
    detector.fit(suspect, data.train[:256])  # throughput does not depend on how well it fits
    detector.defend(texts[:8])  # warm-up
    per_example(detector, texts[:8])
    detector.suspect_.victim.eval()
    before, busy_any = load_line(0)

    arms = {"per-example loop": lambda: per_example(detector, texts),
            "batched (ours)": lambda: detector.defend(texts)[:2]}
    results, best, best_cpu, busy = interleave(arms, args.rounds, args.threads)
    busy_any |= busy

    (ours, our_flags), (loop, loop_flags) = results["batched (ours)"], results["per-example loop"]
    after, _ = load_line(args.threads)
    ratio = best["per-example loop"] / best["batched (ours)"]
    cpu_ratio = best_cpu["per-example loop"] / best_cpu["batched (ours)"]
    print(f"model {args.model}, {len(texts)} {args.dataset} test inputs, batch {args.batch_size},"
          f" {torch.get_num_threads()} threads (pinned), best of {args.rounds} alternating "
          f"rounds; {our_flags.mean():.1%} flagged at {detector.threshold_}")
    print(f"before: {before}; after: {after}")
    for name, seconds in best.items():
        print(f"{name:>17}: {len(texts) / seconds:8.1f} inputs/s ({seconds:.2f}s wall, "
              f"{best_cpu[name]:.2f}s CPU)")
    warning = ("   WARNING: the machine was busy (1-minute load, less this benchmark's threads, "
               "above half the cores): the ratio is unreliable" if busy_any else "")
    print(f"ratio: {ratio:.2f}x wall-clock, {cpu_ratio:.2f}x CPU time (target >= 3x){warning}")
    print(f"agreement: flags {np.mean(our_flags == loop_flags):.4f}, "
          f"predictions {np.mean(ours == loop):.4f}")
    # both arms run the same real tokens (ours adds a little padding): the same work
    flops = real_token_flops(detector, texts, our_flags)
    print_roofline("2 x non-embedding parameters x real tokens",
                   {name: flops for name in best}, best, "per-example loop", "batched (ours)")


if __name__ == "__main__":
    main()
