"""Benchmark: PSIM defense throughput, batched and length-sorted (ours) vs the reference code's
per-example loop (batch size 1: one PSIM forward, then one victim forward if not flagged), on
the same inputs with the same fitted PSIM module and victim, in one run.

    python bench/psim_throughput.py [--model minilm] [--examples 512] [--rounds 2] [--threads N]

Prints both rates, the ratio (target >= 3x) and how often the two paths agree (flags and
predictions; padding can move a borderline confidence by ~1e-6)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from poisonlab.data import load_dataset
from poisonlab.defenses.base import DETECTORS, SuspectModel


@torch.no_grad()
def per_example(detector, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The reference loop: batch size 1, PSIM first, the victim only for accepted inputs."""
    suspect = detector.suspect_
    flags, predictions = np.zeros(len(texts), bool), np.full(len(texts), -1)
    for i, text in enumerate(texts):
        batch = detector.tokenizer_(text, truncation=True, max_length=suspect.max_length,
                                    return_tensors="pt")
        confidence = torch.softmax(detector.model_(**batch).logits, -1).max()
        if confidence > detector.threshold_:
            flags[i] = True
            continue
        batch = suspect.tokenizer(text, truncation=True, max_length=suspect.max_length,
                                  return_tensors="pt")
        predictions[i] = int(suspect.victim(**batch).logits.argmax(-1))
    return predictions, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    texts = [e.text for e in data.test[:args.examples]]
    suspect = SuspectModel.from_released(args.model, data.num_labels, batch_size=args.batch_size)
    detector = DETECTORS.build("psim", {"training": {"epochs": 1, "eval_batch_size":
                                                     args.batch_size}})
    detector.fit(suspect, data.train[:256])  # throughput does not depend on how well it fits
    detector.defend(texts[:8])  # warm-up
    detector.suspect_.victim.eval()

    # alternate the two paths and keep each one's best round: on a shared machine the load
    # changes between measurements
    ours_s = loop_s = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        ours, our_flags, _ = detector.defend(texts)
        ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        loop, loop_flags = per_example(detector, texts)
        loop_s = min(loop_s, time.perf_counter() - start)

    print(f"model {args.model}, {len(texts)} {args.dataset} test inputs, batch {args.batch_size},"
          f" {torch.get_num_threads()} threads; {our_flags.mean():.1%} flagged at "
          f"{detector.threshold_}")
    print(f"per-example loop: {len(texts) / loop_s:8.1f} inputs/s ({loop_s:.2f}s)")
    print(f"batched (ours):   {len(texts) / ours_s:8.1f} inputs/s ({ours_s:.2f}s)")
    print(f"ratio: {loop_s / ours_s:.2f}x (target >= 3x)")
    print(f"agreement: flags {np.mean(our_flags == loop_flags):.4f}, "
          f"predictions {np.mean(ours == loop):.4f}")


if __name__ == "__main__":
    main()
