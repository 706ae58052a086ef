"""Benchmark: ONION word-suspicion scoring, batched with the shared-prefix key/value cache and
length buckets (ours) vs the naive computation (one forward pass, batch size 1, per text and per
leave-one-out variant), on the same texts and language model, in one run.

    python bench/onion_throughput.py [--model smollm2-135m] [--dataset sst2] [--texts 48]

Prints both rates, the ratio (target >= 4x) and the largest relative score difference."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from poisonlab.data import load_dataset
from poisonlab.defenses.detect_perplexity import LeaveOneOutPerplexity, naive_suspicion
from poisonlab.models import load_causal_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = [e.text for e in load_dataset(args.dataset).test[:args.texts]]
    lm = load_causal_lm(args.model)
    LeaveOneOutPerplexity(lm).suspicion(texts[:2])  # warm-up
    variants = sum(len(t.split()) for t in texts)

    # alternate the two paths and keep each one's best round (the load of a shared machine
    # changes between measurements); a fresh scorer each round, so nothing is memoised
    ours_s = naive_s = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        ours = LeaveOneOutPerplexity(lm, batch_tokens=args.batch_tokens).suspicion(texts)
        ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        naive = naive_suspicion(LeaveOneOutPerplexity(lm), texts)
        naive_s = min(naive_s, time.perf_counter() - start)

    difference = max(float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)), initial=0.0))
                     for a, b in zip(ours, naive))
    print(f"model {args.model}, {len(texts)} {args.dataset} texts, {variants} leave-one-out "
          f"variants, {torch.get_num_threads()} threads")
    print(f"naive (per variant): {variants / naive_s:8.1f} variants/s ({naive_s:.2f}s)")
    print(f"batched + cached:    {variants / ours_s:8.1f} variants/s ({ours_s:.2f}s)")
    print(f"ratio: {naive_s / ours_s:.2f}x (target >= 4x)")
    print(f"largest relative score difference: {difference:.2e}")


if __name__ == "__main__":
    main()
