"""Markdown tables from MNER run folders (reads only their metrics.json and config.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from poisonlab.errors import ConfigError


def _load(run: Path) -> tuple[dict, dict]:
    if not (run / "metrics.json").is_file():
        raise ConfigError(f"{run} has no metrics.json (unfinished or not an MNER run)")
    return (json.loads((run / "metrics.json").read_text()),
            yaml.safe_load((run / "config.yaml").read_text()))


def per_type_table(run: str | Path, split: str = "test") -> str:
    """P/R/F1 per type and micro (percent), with training size, epochs and time."""
    metrics, config = _load(Path(run))
    scores = metrics[split]["entities"]
    rows = ["| type | P | R | F1 | gold |", "| --- | --- | --- | --- | --- |"]
    for kind in [*sorted(k for k in scores if k != "micro"), "micro"]:
        s = scores[kind]
        rows.append(f"| {kind} | {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | "
                    f"{100 * s['f1']:.2f} | {s['support']} |")
    rows.append(f"\n{config['model']['encoder']}, {metrics['train_tweets']} training tweets, "
                f"{metrics['epochs']} epoch(s), training {metrics['train_seconds'] / 60:.1f} min, "
                f"total {metrics['total_seconds'] / 60:.1f} min, seed {metrics['seed']}.")
    return "\n".join(rows)


def ablation_table(runs: dict[str, str | Path], split: str = "test") -> str:
    """One row per named run: micro P/R/F1 and grounding Acc@0.5 (percent)."""
    rows = ["| variant | P | R | F1 | Acc@0.5 |", "| --- | --- | --- | --- | --- |"]
    for name, run in runs.items():
        metrics, _ = _load(Path(run))
        micro = metrics[split]["entities"]["micro"]
        grounding = metrics[split].get("grounding")
        acc = f"{100 * grounding['accuracy']:.1f}" if grounding else "n/a"
        rows.append(f"| {name} | {100 * micro['precision']:.2f} | {100 * micro['recall']:.2f} | "
                    f"{100 * micro['f1']:.2f} | {acc} |")
    return "\n".join(rows)
