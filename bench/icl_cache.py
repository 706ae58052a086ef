"""Benchmark: in-context test-set scoring with the demonstration prefix cached once and shared
read-only (ours) vs the previous cached path (full-vocabulary logits for every prefix token and a
deep copy of the prefix cache repeated for every batch) vs the full prompt re-encoded for every
query; same model and inputs, batched the same way, in one run.

    python bench/icl_cache.py [--model smollm2-135m] [--queries 32] [--rounds 2] [--threads 1]

The arms alternate over `--rounds` (the order reverses every round) and each keeps its best
round; torch's thread count is pinned. Prints the load average, each arm's wall-clock and CPU
time (this process's: steadier than the wall clock on a shared machine when one thread is
pinned), the speed ratios (target >= 5x over re-encoding on smollm2-135m; a warning beside them
when the machine was busy: a 1-minute load, less this benchmark's threads, above half the cores)
and the largest score difference between the paths (the two cached paths must agree exactly;
re-encoding within 1e-4, float32)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from typing import Any, Iterator

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import interleave, load_line  # noqa: E402

from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.icl import scoring  # noqa: E402
from poisonlab.icl.demonstrations import (as_demonstrations, render_context,  # noqa: E402
                                          render_queries, sample_balanced)
from poisonlab.icl.scoring import LabelScorer  # noqa: E402
from poisonlab.icl.template import PromptTemplate  # noqa: E402
from poisonlab.icl.verbalizer import Verbalizer  # noqa: E402
from poisonlab.models import load_causal_lm  # noqa: E402




class CopiedPrefixScorer(LabelScorer):
    """The cached path as it was: the prefix pass computes logits at every prefix position."""

    def _prefix_cache(self, prefix_ids: list[int], device: torch.device) -> Any:
        return self.loaded.model(input_ids=torch.tensor([prefix_ids], device=device),
                                 use_cache=True).cache


def _copied(cache: Any, batch: int) -> Any:
    repeated = copy.deepcopy(cache)
    repeated.batch_repeat_interleave(batch)
    return repeated


@contextlib.contextmanager
def copied_prefix_per_batch() -> Iterator[None]:
    shared = scoring.shared_prefix_cache
    scoring.shared_prefix_cache = _copied
    try:
        yield
    finally:
        scoring.shared_prefix_cache = shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--shots-per-class", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    parser.add_argument("--no-reencode", action="store_true",
                        help="skip the slow re-encoding arm (compare the two cached paths)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = load_dataset(args.dataset)
    template = PromptTemplate("{text} It was {label}.")
    verbalizer = Verbalizer.from_lists([["bad"], ["good", "great", "wonderful"]])
    demos = as_demonstrations(sample_balanced(dataset.train, args.shots_per_class,
                                              dataset.num_labels, seed=0), template)
    context = render_context(demos, verbalizer)
    queries = render_queries(as_demonstrations(dataset.test[:args.queries], template))
    loaded = load_causal_lm(args.model)
    prefix_tokens = len(loaded.tokenizer(context).input_ids)

    def arm(scorer_class: type[LabelScorer], use_cache: bool, patch: Any) -> Any:
        def run() -> np.ndarray:
            # a fresh scorer: nothing memoised
            scorer = scorer_class(loaded, verbalizer, template.label_prefix,
                                  batch_size=args.batch_size, use_cache=use_cache)
            with patch():
                return scorer.score(context, queries)
        return run

    arms = {"shared prefix (ours)": arm(LabelScorer, True, contextlib.nullcontext),
            "copied prefix (before)": arm(CopiedPrefixScorer, True, copied_prefix_per_batch)}
    if not args.no_reencode:
        arms["re-encoded prompt"] = arm(LabelScorer, False, contextlib.nullcontext)
    # warm-up on another prefix
    LabelScorer(loaded, verbalizer, template.label_prefix).score(context + " ", queries[:2])
    before, busy_any = load_line(0)
    scores, best, best_cpu, busy = interleave(arms, args.rounds, args.threads)
    busy_any |= busy

    after, _ = load_line(args.threads)
    ours, ours_cpu = best["shared prefix (ours)"], best_cpu["shared prefix (ours)"]
    warning = ("   WARNING: the machine was busy (1-minute load, less this benchmark's threads, "
               "above half the cores): ratios are unreliable" if busy_any else "")
    print(f"model {args.model}, {len(queries)} queries, {len(demos)} demonstrations "
          f"({prefix_tokens} prefix tokens), batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads (pinned), best of {args.rounds} alternating rounds")
    print(f"before: {before}; after: {after}")
    for name, seconds in best.items():
        print(f"{name:>24}: {seconds:7.2f}s wall, {best_cpu[name]:7.2f}s CPU; ours is "
              f"{seconds / ours:.2f}x faster (wall), {best_cpu[name] / ours_cpu:.2f}x (CPU)")
    if args.no_reencode:
        print(f"ratio over re-encoding: not measured{warning}")
    else:
        print(f"ratio over re-encoding: {best['re-encoded prompt'] / ours:.1f}x wall-clock, "
              f"{best_cpu['re-encoded prompt'] / ours_cpu:.1f}x CPU time (target >= 5x)"
              f"{warning}")
    exact = np.array_equal(scores["shared prefix (ours)"], scores["copied prefix (before)"])
    print(f"shared vs copied prefix: identical scores {exact}")
    if not args.no_reencode:
        gap = np.abs(scores["shared prefix (ours)"] - scores["re-encoded prompt"]).max()
        print(f"max |score difference| to re-encoding {gap:.2e}")


if __name__ == "__main__":
    main()
