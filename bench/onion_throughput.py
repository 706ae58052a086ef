"""Benchmark: ONION word-suspicion scoring, batched with the shared-prefix key/value cache and
length buckets (ours) vs the naive computation (one forward pass, batch size 1, per text and per
leave-one-out variant), on the same texts and language model, in one run.

    python bench/onion_throughput.py [--model smollm2-135m] [--texts 16] [--rounds 2] [--threads 1]

The two arms alternate over `--rounds` (the order flips every round) and each keeps its best
round; torch's thread count is pinned. Prints the load average, both rates, the ratio (target
>= 4x) in wall-clock time and in this process's CPU time (steadier than the wall clock on a shared
machine when one thread is pinned), with a warning beside it when the machine was busy (a
1-minute load, less this benchmark's threads, above half the cores), and the largest relative
score difference."""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import interleave, load_line, non_embedding_parameters, print_roofline  # noqa: E402

from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.defenses.detect_perplexity import (LeaveOneOutPerplexity,  # noqa: E402
                                                  leave_one_out, naive_suspicion)
from poisonlab.models import load_causal_lm  # noqa: E402




def forward_flops(scorer: LeaveOneOutPerplexity, texts: list[str]) -> dict[str, float]:
    """Forward FLOPs of each arm without padding. Naive: every text and variant in full, the LM
    head at every position. Batched + cached: every text in full, then per variant only the
    tokens after the shared prefix and the first new one (see detect_perplexity's doc)."""
    model = scorer.lm.model
    body = 2.0 * non_embedding_parameters(model.base_model)
    head = 2.0 * model.get_output_embeddings().weight.numel()
    naive = ours = 0.0
    for text in texts:
        full = scorer.encode([text])[0]
        words = text.split()
        variants = scorer.encode(leave_one_out(words)) if len(words) > 1 else []
        ours += (body + head) * len(full)
        for ids in [full] + variants:
            naive += (body + head) * len(ids)
        for ids in variants:
            shared = next((i for i, (a, b) in enumerate(zip(ids, full)) if a != b),
                          min(len(ids), len(full)))
            ours += head + (body + head) * max(len(ids) - shared - 1, 0)
    return {"naive (per variant)": naive, "batched + cached": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = [e.text for e in load_dataset(args.dataset).test[:args.texts]]
    lm = load_causal_lm(args.model)
    LeaveOneOutPerplexity(lm).suspicion(texts[:2])  # warm-up
    variants = sum(len(t.split()) for t in texts)
    before, busy_any = load_line(0)

    # a fresh scorer each round, so nothing is memoised
    arms = {
        "naive (per variant)": lambda: naive_suspicion(LeaveOneOutPerplexity(lm), texts),
        "batched + cached": lambda: LeaveOneOutPerplexity(
            lm, batch_tokens=args.batch_tokens).suspicion(texts),
    }
    scores, best, best_cpu, busy = interleave(arms, args.rounds, args.threads)
    busy_any |= busy

    naive, ours = scores["naive (per variant)"], scores["batched + cached"]
    difference = max(float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)), initial=0.0))
                     for a, b in zip(ours, naive))
    after, _ = load_line(args.threads)
    ratio = best["naive (per variant)"] / best["batched + cached"]
    cpu_ratio = best_cpu["naive (per variant)"] / best_cpu["batched + cached"]
    print(f"model {args.model}, {len(texts)} {args.dataset} texts, {variants} leave-one-out "
          f"variants, {torch.get_num_threads()} threads (pinned), best of {args.rounds} "
          f"alternating rounds")
    print(f"before: {before}; after: {after}")
    for name, seconds in best.items():
        print(f"{name:>20}: {variants / seconds:8.1f} variants/s ({seconds:.2f}s wall, "
              f"{best_cpu[name]:.2f}s CPU)")
    warning = ("   WARNING: the machine was busy (1-minute load, less this benchmark's threads, "
               "above half the cores): the ratio is unreliable" if busy_any else "")
    print(f"ratio: {ratio:.2f}x wall-clock, {cpu_ratio:.2f}x CPU time (target >= 4x){warning}")
    print(f"largest relative score difference: {difference:.2e}")
    print_roofline("2 x non-embedding parameters per token run + the LM head per position "
                   "scored", forward_flops(LeaveOneOutPerplexity(lm), texts), best,
                   "naive (per variant)", "batched + cached")


if __name__ == "__main__":
    main()
