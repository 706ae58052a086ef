"""MNER-QG image sharing: the CNN runs once per tweet and its maps serve the tweet's queries,
against the naive batch that repeats each image for every query row.

Same model, same synthetic tweets, forward + backward per batch, measured in one process; the two
are interleaved over several rounds (the order flips every round) and each keeps its best round;
torch's thread count is pinned. The ratio is printed in wall-clock and in this process's CPU time
(steadier on a shared machine when one thread is pinned), with the load average, and a warning
beside it when the machine was busy (a 1-minute load, less this benchmark's threads, above half
the cores). The outputs must agree (the naive path is the same computation on repeated images). Target: ratio >= 1.2 with MiniLM, four
queries and 256-pixel images (FAOA's input scale). The gain is the CNN's share of a step: measured
1.32x at 256 px, 1.05x at the model's default 128 px, 2.3x with the tests' tiny-bert at 128 px.

    python bench/mner_image_sharing.py [--encoder minilm] [--tweets 32] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import interleave, load_line  # noqa: E402

from poisonlab.mner.config import MnerConfig  # noqa: E402
from poisonlab.mner.synthetic import generate  # noqa: E402
from poisonlab.mner.train import build_pipeline, load_data, make_batch  # noqa: E402




def timed_pass(model, batches, repeat_images: bool) -> tuple[float, float, torch.Tensor]:
    """Wall-clock and CPU seconds for forward + backward over `batches`, and the last batch's
    start logits."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        images = batch.images
        if repeat_images:
            images = images.repeat_interleave(batch.text.input_ids.shape[0] // len(images), dim=0)
        out = model(batch.text, images)
        model.zero_grad()
        (out.start.sum() + sum(g.sum() for g in out.grounding)).backward()
    return time.perf_counter() - started, time.process_time() - cpu, out.start.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--tweets", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generator's missing and corrupt images
        generate(folder, n_train=args.tweets, n_valid=1, n_test=1)
        config = MnerConfig.model_validate({
            "data": {"dir": folder, "images": "images", "boxes": "boxes.jsonl"},
            "model": {"encoder": args.encoder, "image_size": args.image_size}})
        train = load_data(config, ("train",))["train"]
        config.data.types = ["LOC", "ORG", "OTHER", "PER"]
        pipe = build_pipeline(config)
        batches = [make_batch(pipe, train, list(range(s, min(s + args.batch_size, len(train)))))
                   for s in range(0, len(train), args.batch_size)]
    pipe.model.eval()  # no dropout: both paths must give the same numbers
    timed_pass(pipe.model, batches[:1], False)  # warm-up
    before, busy_any = load_line(0)
    arms = {name: (lambda repeat=(name == "repeated images"):
                   timed_pass(pipe.model, batches, repeat))
            for name in ("repeated images", "shared (poisonlab)")}
    passes, best, best_cpu, busy = interleave(arms, args.rounds, args.threads)
    busy_any |= busy
    logits = {name: result[2] for name, result in passes.items()}
    gap = (logits["repeated images"] - logits["shared (poisonlab)"]).abs().max().item()
    rows = args.tweets * len(config.data.types)
    print(f"{torch.get_num_threads()} threads (pinned), best of {args.rounds} alternating rounds;"
          f" before: {before}; after: {load_line(args.threads)[0]}")
    for name, seconds in best.items():
        print(f"{name:>20}: {rows / seconds:7.1f} query rows/s")
    warning = ("   WARNING: the machine was busy (1-minute load, less this benchmark's threads, "
               "above half the cores): the ratio is unreliable" if busy_any else "")
    print(f"ratio {best['repeated images'] / best['shared (poisonlab)']:.2f}x wall-clock, "
          f"{best_cpu['repeated images'] / best_cpu['shared (poisonlab)']:.2f}x CPU time "
          f"(target >= 1.2 at 256 px); largest logit difference {gap:.1e}{warning}")


if __name__ == "__main__":
    main()
