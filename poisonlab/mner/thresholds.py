"""Choose the span threshold on a held-out split: one forward pass, then decoding and scoring at
every threshold of a grid. MRC heads trained briefly are often under-confident (high precision,
low recall at 0.5); the threshold is picked on valid and then applied to test with
`poisonlab mner eval RUN --threshold T`, never picked on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poisonlab.errors import ConfigError
from poisonlab.io import write_json
from poisonlab.mner.scorer import entity_scores
from poisonlab.mner.train import METRICS_VERSION, gold_spans, head_probabilities, load_data, load_run

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def sweep_thresholds(run_dir: str | Path, split: str = "valid",
                     grid: tuple[float, ...] = DEFAULT_GRID, *,
                     device: str | None = None) -> dict[str, Any]:
    """Micro P/R/F1 at each threshold of `grid` and the best one; writes thresholds_<split>.json
    in the run folder. `device`: where the model runs (default: the run's runtime.device)."""
    if not grid or any(not 0 < t < 1 for t in grid):
        raise ConfigError(f"thresholds must lie in (0, 1), got {list(grid)}")
    pipe = load_run(run_dir, device=device)
    data = load_data(pipe.config, (split,))[split]
    batches = list(head_probabilities(pipe, data))
    gold = gold_spans(pipe, data)
    existence = pipe.config.decode.existence_threshold
    rows = []
    for threshold in sorted(grid):
        predicted = [spans for b in batches for spans in b.spans(pipe.types, threshold, existence)]
        micro = entity_scores(gold, predicted)["micro"]
        rows.append({"threshold": threshold, **{k: micro[k] for k in ("precision", "recall", "f1")}})
    best = max(rows, key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))
    result = {"metrics_version": METRICS_VERSION, "split": split, "existence_threshold": existence,
              "sweep": rows, "best_threshold": best["threshold"]}
    write_json(Path(run_dir) / f"thresholds_{split}.json", result)
    return result
