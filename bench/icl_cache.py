"""Benchmark: in-context test-set scoring with the demonstration prefix cached once vs the full
prompt re-encoded for every query (both batched the same way), same model and inputs, one run.

    python bench/icl_cache.py [--model smollm2-135m] [--queries 64] [--threads N]

Prints the speed ratio (target >= 5x on smollm2-135m) and the largest score difference between
the two paths (target <= 1e-4; float32)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from poisonlab.icl.demonstrations import (as_demonstrations, render_context, render_queries,
                                          sample_balanced)
from poisonlab.icl.scoring import LabelScorer
from poisonlab.icl.template import PromptTemplate
from poisonlab.icl.verbalizer import Verbalizer
from poisonlab.models import load_causal_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--shots-per-class", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from poisonlab.icl.data import load_icl_dataset
    dataset = load_icl_dataset(args.dataset)
    template = PromptTemplate("{text} It was {label}.")
    verbalizer = Verbalizer.from_lists([["bad"], ["good", "great", "wonderful"]])
    demos = as_demonstrations(sample_balanced(dataset.train, args.shots_per_class,
                                              dataset.num_labels, seed=0), template)
    context = render_context(demos, verbalizer)
    queries = render_queries(as_demonstrations(dataset.test[:args.queries], template))
    loaded = load_causal_lm(args.model)
    prefix_tokens = len(loaded.tokenizer(context).input_ids)

    def timed(use_cache: bool) -> tuple[float, np.ndarray]:
        scorer = LabelScorer(loaded, verbalizer, template.label_prefix,
                             batch_size=args.batch_size, use_cache=use_cache)
        scorer.score(context + " ", queries[:2])  # warm-up on another prefix (memo-free)
        start = time.perf_counter()
        scores = scorer.score(context, queries)
        return time.perf_counter() - start, scores

    cached_s, cached = timed(True)
    plain_s, plain = timed(False)
    print(f"model {args.model}, {len(queries)} queries, {len(demos)} demonstrations "
          f"({prefix_tokens} prefix tokens), batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"cached prefix: {cached_s:.2f} s   re-encoded prompt: {plain_s:.2f} s   "
          f"speed ratio {plain_s / cached_s:.1f}x")
    print(f"max |score difference| {np.abs(cached - plain).max():.2e}")


if __name__ == "__main__":
    main()
