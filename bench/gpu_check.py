"""GPU check: what the CPU tests cannot show, in a few minutes on one GPU (bench/gpu_check.sh runs
it, and a two-process run when there are several GPUs).

- LoRA training of a causal classifier (SmolLM2-135M by default), fp32 vs bf16 autocast (the
  runtime's `mixed_precision`): examples/s of each, their ratio, and the final epoch loss, which
  must agree within `--loss-tolerance` (absolute; bf16 rounds every matmul, so the losses follow
  the same path only approximately).
- PSIM (on MiniLM) and ICL label scoring (on the causal LM): the same objects scored with their
  models on the GPU and then on the CPU; flags and predictions must be identical.
- ONION's leave-one-out suspicion on the GPU and the CPU: the most suspicious word of every text
  must be the same.

    python bench/gpu_check.py [--model smollm2-135m] [--json results.jsonl]
    accelerate launch --num_processes 2 bench/gpu_check.py --ddp --json results.jsonl
    python bench/gpu_check.py --summary results.jsonl      # the table of every row written

Each check appends its rows (JSON lines) to `--json` as soon as it ends (without `--json` the run
prints the summary table); the exit status is 1 when a check fails, 2 when there is no CUDA
device (`--device cpu` runs the same code on the CPU, with tiny models to check the script)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

Row = dict[str, Any]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _texts(count: int, split: str = "test") -> list[Any]:
    from poisonlab.data import load_dataset
    return getattr(load_dataset("movie-snippets"), split)[:count]


def train_lora(model_name: str, precision: str, examples: list[Any], args: argparse.Namespace,
               runtime: Any) -> tuple[float, float]:
    """(examples/s, final epoch loss) of one LoRA epoch under `precision`."""
    from poisonlab.models import load_classifier
    from poisonlab.training import TrainingConfig, train_classifier
    from poisonlab.tuning import TUNING_STRATEGIES
    loaded = load_classifier(model_name, 2, seed=0)
    model = TUNING_STRATEGIES.build("lora", {"r": 8, "alpha": 16}).apply(loaded)
    runtime.place(model)
    config = TrainingConfig(epochs=1, batch_size=args.batch_size, learning_rate=2e-4,
                            max_length=64, seed=0)
    device = runtime.device
    train_classifier(model, loaded.tokenizer, examples[:2 * args.batch_size], config,
                     progress=False, runtime=runtime)  # warm-up: kernels, allocator
    loaded = load_classifier(model_name, 2, seed=0)  # and a fresh model for the measurement
    model = TUNING_STRATEGIES.build("lora", {"r": 8, "alpha": 16}).apply(loaded)
    runtime.place(model)
    _sync(device)
    start = time.perf_counter()
    history = train_classifier(model, loaded.tokenizer, examples, config, progress=False,
                               runtime=runtime)
    _sync(device)
    seconds = time.perf_counter() - start
    return len(examples) / seconds, history[-1]["loss"]


def check_training(args: argparse.Namespace) -> list[Row]:
    from poisonlab.runtime import Runtime, RuntimeConfig
    examples = _texts(args.train_examples, "train")
    rows, results = [], {}
    for precision in ("no", "bf16"):
        runtime = Runtime(RuntimeConfig(device=args.device, mixed_precision=precision)).check()
        rate, loss = train_lora(args.model, precision, examples, args, runtime)
        results[precision] = (rate, loss)
        processes = runtime.num_processes
        rows.append({"check": f"LoRA train, {processes} process(es) x batch {args.batch_size}",
                     "setting": "fp32" if precision == "no" else "bf16 autocast",
                     "result": f"{rate:.1f} examples/s", "value": f"loss {loss:.4f}",
                     "ok": None, "loss": loss, "rate": rate, "precision": precision,
                     "processes": processes, "global_batch": args.batch_size * processes})
    (fp32_rate, fp32_loss), (bf16_rate, bf16_loss) = results["no"], results["bf16"]
    gap = abs(bf16_loss - fp32_loss)
    rows.append({"check": f"LoRA train: bf16 vs fp32, {processes} process(es)",
                 "setting": args.model, "result": f"speed ratio {bf16_rate / fp32_rate:.2f}x",
                 "value": f"|loss gap| {gap:.4f} (tolerance {args.loss_tolerance})",
                 "ok": gap <= args.loss_tolerance})
    return rows


def compare_processes(rows: list[Row], tolerance: float) -> list[Row]:
    """N processes x batch b train as one process x batch N*b: their fp32 losses agree."""
    fp32 = [r for r in rows if r.get("precision") == "no"]
    single = [r for r in fp32 if r["processes"] == 1]
    out = []
    for many in (r for r in fp32 if r["processes"] > 1):
        for one in (r for r in single if r["global_batch"] == many["global_batch"]):
            gap = abs(many["loss"] - one["loss"])
            out.append({"check": f"{many['processes']} processes vs 1, fp32",
                        "setting": f"global batch {one['global_batch']}",
                        "result": f"speed ratio {many['rate'] / one['rate']:.2f}x",
                        "value": f"|loss gap| {gap:.4f} (tolerance {tolerance})",
                        "ok": gap <= tolerance})
    return out


def _compare(check: str, setting: str, on_device: Callable[[], Any], on_cpu: Callable[[], Any],
             same: Callable[[Any, Any], tuple[bool, str]]) -> Row:
    start = time.perf_counter()
    first = on_device()
    device_s = time.perf_counter() - start
    start = time.perf_counter()
    second = on_cpu()
    cpu_s = time.perf_counter() - start
    ok, detail = same(first, second)
    return {"check": check, "setting": setting,
            "result": f"device {device_s:.2f}s, cpu {cpu_s:.2f}s", "value": detail, "ok": ok}


def check_psim(args: argparse.Namespace) -> Row:
    from poisonlab.defenses.base import DETECTORS, SuspectModel
    device = torch.device(args.device)
    suspect = SuspectModel.from_released(args.encoder, 2, max_length=64)
    suspect.victim.to(device)
    detector = DETECTORS.build("psim", {"training": {"epochs": 1, "max_length": 64}})
    detector.fit(suspect, _texts(256, "train"))  # trains on the victim's device
    texts = [e.text for e in _texts(args.score_examples)]

    def on_cpu() -> Any:
        cpu = copy.copy(detector)
        cpu.model_ = copy.deepcopy(detector.model_).to("cpu")
        cpu.suspect_ = copy.copy(suspect)
        cpu.suspect_.victim = copy.deepcopy(suspect.victim).to("cpu")
        return cpu.defend(texts)

    def same(a: Any, b: Any) -> tuple[bool, str]:
        (pred_a, flags_a, scores_a), (pred_b, flags_b, scores_b) = a, b
        ok = np.array_equal(pred_a, pred_b) and np.array_equal(flags_a, flags_b)
        return ok, (f"predictions {np.mean(pred_a == pred_b):.4f}, flags "
                    f"{np.mean(flags_a == flags_b):.4f} equal; max |score gap| "
                    f"{np.abs(scores_a - scores_b).max():.1e}")

    return _compare("PSIM defend", f"{args.encoder}, {len(texts)} inputs",
                    lambda: detector.defend(texts), on_cpu, same)


def check_icl(args: argparse.Namespace, loaded: Any) -> list[Row]:
    from poisonlab.icl.demonstrations import (as_demonstrations, render_context, render_queries,
                                              sample_balanced)
    from poisonlab.icl.scoring import LabelScorer
    from poisonlab.icl.template import PromptTemplate
    from poisonlab.icl.verbalizer import Verbalizer
    template = PromptTemplate("{text} It was {label}.")
    verbalizer = Verbalizer.from_lists([["bad"], ["good", "great", "wonderful"]])
    demos = as_demonstrations(sample_balanced(_texts(400, "train"), 4, 2, seed=0), template)
    context = render_context(demos, verbalizer)
    queries = render_queries(as_demonstrations(_texts(args.score_examples), template))
    rows = []
    for mode in ("first-token", "sum"):
        def scores(device: torch.device, mode: str = mode) -> np.ndarray:
            loaded.model.to(device)
            return LabelScorer(loaded, verbalizer, template.label_prefix, mode=mode,
                               batch_size=16).score(context, queries)

        def same(a: np.ndarray, b: np.ndarray) -> tuple[bool, str]:
            equal = a.argmax(1) == b.argmax(1)
            return bool(equal.all()), (f"predictions {equal.mean():.4f} equal; max |score gap| "
                                       f"{np.abs(a - b).max():.1e}")

        rows.append(_compare("ICL label scoring", f"{mode}, {len(queries)} queries",
                             lambda: scores(torch.device(args.device)),
                             lambda: scores(torch.device("cpu")), same))
    return rows


def check_onion(args: argparse.Namespace, loaded: Any) -> Row:
    from poisonlab.defenses.detect_perplexity import LeaveOneOutPerplexity
    texts = [e.text for e in _texts(args.onion_texts)]

    def suspicion(device: torch.device) -> list[np.ndarray]:
        loaded.model.to(device)
        return LeaveOneOutPerplexity(loaded).suspicion(texts)

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[bool, str]:
        top = [x.argmax() == y.argmax() for x, y in zip(a, b) if len(x)]
        gap = max(float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)), initial=0.0))
                  for x, y in zip(a, b))
        return all(top), f"top word {np.mean(top):.4f} equal; max relative gap {gap:.1e}"

    return _compare("ONION suspicion", f"{len(texts)} texts",
                    lambda: suspicion(torch.device(args.device)),
                    lambda: suspicion(torch.device("cpu")), same)


def print_table(rows: list[Row]) -> bool:
    header = ("check", "setting", "result", "value", "pass")
    cells = [[str(r["check"]), str(r["setting"]), str(r["result"]), str(r["value"]),
              "" if r["ok"] is None else ("PASS" if r["ok"] else "FAIL")] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print(line(c))
    return all(r["ok"] is not False for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: run the same checks on the CPU (to test this script)")
    parser.add_argument("--model", default="smollm2-135m", help="causal LM (LoRA, ICL, ONION)")
    parser.add_argument("--encoder", default="minilm", help="PSIM's suspect model")
    parser.add_argument("--train-examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--score-examples", type=int, default=64)
    parser.add_argument("--onion-texts", type=int, default=16)
    parser.add_argument("--loss-tolerance", type=float, default=0.05)
    parser.add_argument("--ddp", action="store_true",
                        help="only the training check (run under accelerate launch)")
    parser.add_argument("--json", type=Path, help="append the rows here (JSON lines)")
    parser.add_argument("--summary", type=Path, help="print the table of this file's rows")
    args = parser.parse_args()
    if args.summary:
        rows = [json.loads(line) for line in args.summary.read_text().splitlines() if line]
        return 0 if print_table(rows + compare_processes(rows, args.loss_tolerance)) else 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU machine, "
              "or pass --device cpu to check the script on the CPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    main_process = int(os.environ.get("RANK", "0")) == 0
    rows: list[Row] = []

    def record(new: list[Row]) -> None:
        """Keep the rows, and append them to --json at once: a run cut short keeps its rows."""
        rows.extend(new)
        if args.json and main_process:
            with args.json.open("a") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in new)
        for r in new if main_process else ():
            print(f"gpu_check: {r['check']} ({r['setting']}): {r['result']}; {r['value']}",
                  flush=True)

    record(check_training(args))
    if not args.ddp:
        from poisonlab.models import load_causal_lm
        record([check_psim(args)])
        loaded = load_causal_lm(args.model)
        record(check_icl(args, loaded))
        record([check_onion(args, loaded)])
    if main_process and not args.json:
        print_table(rows)
    return 0 if all(r["ok"] is not False for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
