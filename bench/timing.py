"""What every benchmark here shares: the machine's load (a busy machine flatters a batched arm
over a per-example one, so each figure says whether it was taken under load) and the interleaved
timing of two or more arms over rounds, order flipped each round, best wall and CPU time kept."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch


def load_line(own_threads: int) -> tuple[str, bool]:
    """The load average and whether the machine is busy: a 1-minute load, less this benchmark's
    own threads, above half the cores."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {cores} cores", \
        one - own_threads > 0.5 * cores


def interleave(arms: dict[str, Callable[[], Any]], rounds: int, threads: int
               ) -> tuple[dict[str, Any], dict[str, float], dict[str, float], bool]:
    """(last result, best wall seconds, best CPU seconds per arm; whether the machine was busy)."""
    best = {name: float("inf") for name in arms}
    best_cpu = dict(best)
    results: dict[str, Any] = {}
    busy_any = load_line(0)[1]
    for round_ in range(rounds):
        for name in (list(arms) if round_ % 2 == 0 else list(arms)[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = arms[name]()
            seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name], best_cpu[name] = min(best[name], seconds), min(best_cpu[name], cpu)
            line, busy = load_line(threads)
            busy_any |= busy
            print(f"round {round_ + 1} {name}: {seconds:.2f}s wall, {cpu:.2f}s CPU ({line})",
                  flush=True)
    return results, best, best_cpu, busy_any


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside embedding tables: a token's forward pass costs about 2 FLOPs each."""
    embedded = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding)
                for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedded)


def gemm_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an fp32 size^3 matrix product on this machine, now: the roof that a
    compute-bound arm can approach but not pass."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


def print_roofline(counted: str, work: dict[str, float], best: dict[str, float],
                   baseline: str, ours: str) -> None:
    """Each arm's arithmetic (`work`, FLOPs, counted as `counted` says) against a fp32 GEMM timed
    now, and the ratio our arm would reach at 100% of that roof: the most any batching of the
    same arithmetic can give on this machine."""
    gemm = gemm_flops()
    print(f"compute ({counted}; fp32 2048^3 GEMM {gemm / 1e9:.1f} GFLOP/s on "
          f"{torch.get_num_threads()} threads, measured now):")
    for name, seconds in best.items():
        print(f"{name:>20}: {work[name] / 1e9:8.1f} GFLOP in {seconds:.2f}s = "
              f"{work[name] / seconds / 1e9:6.1f} GFLOP/s = {work[name] / seconds / gemm:5.1%} "
              "of the GEMM")
    print(f"work ratio {work[baseline] / work[ours]:.2f}x; ceiling: {ours} at 100% of the GEMM "
          f"would be {best[baseline] * gemm / work[ours]:.2f}x {baseline}")
