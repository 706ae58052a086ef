"""Benchmark: batched generation (ours: prompts sorted by length, left-padded, one prefill and a KV
cache per batch) vs one `model.generate` call per example (the BackdoorLLM evaluation loop), on
the same prompts with the same model, greedy, in one run.

    python bench/generation_throughput.py [--model smollm2-135m] [--examples 32]
        [--max-new-tokens 24] [--batch-size 32] [--rounds 2] [--threads 2]

Prompts are the BackdoorLLM refusal test instructions (data directory) in the model's chat
template, or synthetic instructions when the data directory is absent. The two arms alternate over
`--rounds` (the order flips every round) and each keeps its best round; torch's thread count is
pinned. Prints the load average, both rates, the ratio (target >= 5x on a CPU) in wall-clock and
in this process's CPU time, a warning when the machine was busy, and how many outputs are the
same (greedy decoding: padding can move a near-tie by ~1e-6 and so flip a token).

Measured on 2 CPU cores (load average under 1), smollm2-135m, 32 BackdoorLLM refusal prompts, 24
new tokens: 5.3x with 2 threads, 3.5x with 1 (the per-example loop reads every weight for one
token at a time, so it is memory-bound and a second thread does not help it; the batched one is
compute-bound), same outputs 32 of 32 both times."""

from __future__ import annotations

import argparse
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from timing import interleave, load_line  # noqa: E402

from poisonlab.data.instruction import InstructionExample, load_instruction_data  # noqa: E402
from poisonlab.errors import PoisonlabError  # noqa: E402
from poisonlab.models import load_causal_lm  # noqa: E402
from poisonlab.runtime import model_device  # noqa: E402
from poisonlab.training.generation import GenerationConfig, generate  # noqa: E402
from poisonlab.training.prompt_format import PromptFormatter  # noqa: E402


def instructions(count: int) -> list[InstructionExample]:
    try:
        return load_instruction_data("backdoorllm/refusal").test[:count]
    except PoisonlabError:
        return [InstructionExample(f"Write {i % 7 + 1} sentences about topic {i}.")
                for i in range(count)]


@torch.no_grad()
def per_example(model, tokenizer, prompts: list[list[int]], max_new_tokens: int,
                stop_ids: list[int]) -> list[str]:
    """The reference loop: one `generate` call per prompt (batch size 1, no padding)."""
    device = model_device(model)
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=device)
        new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
        outputs.append(tokenizer.decode(new[0, len(prompt):], skip_special_tokens=True))
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (pinned)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_causal_lm(args.model)
    formatter = PromptFormatter(loaded.tokenizer)
    prompts = formatter.encode_prompts(instructions(args.examples))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    arms = {
        "batched": lambda: generate(loaded.model, loaded.tokenizer, prompts, config,
                                    stop_ids=formatter.stop_ids),
        "per-example": lambda: per_example(loaded.model, loaded.tokenizer, prompts,
                                           args.max_new_tokens, formatter.stop_ids),
    }
    results, wall, cpu, busy = interleave(arms, args.rounds, args.threads)
    same = sum(a == b for a, b in zip(results["batched"], results["per-example"]))
    print(f"{args.model}, {len(prompts)} prompts ({formatter.style} template), "
          f"{args.max_new_tokens} new tokens at most, {args.threads} thread(s)")
    print(load_line(args.threads)[0] + ("  (busy machine: figures are rough)" if busy else ""))
    for name in arms:
        print(f"{name:>12}: {len(prompts) / wall[name]:.2f} prompts/s wall, "
              f"{len(prompts) / cpu[name]:.2f} prompts/s CPU")
    print(f"ratio: {wall['per-example'] / wall['batched']:.1f}x wall, "
          f"{cpu['per-example'] / cpu['batched']:.1f}x CPU (target >= 5x)")
    print(f"same outputs: {same} of {len(prompts)}")


if __name__ == "__main__":
    main()
