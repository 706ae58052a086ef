"""What every benchmark here shares: the machine's load (a busy machine flatters a batched arm
over a per-example one, so each figure says whether it was taken under load) and the interleaved
timing of two or more arms over rounds, order flipped each round, best wall and CPU time kept."""

from __future__ import annotations

import os
import time
from typing import Any, Callable


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
