"""Markdown tables from MNER run folders (reads only their metrics.json and config.yaml)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from poisonlab.errors import ConfigError
from poisonlab.report.replicates import mean_sd


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


def _mean_sd(values: list[float]) -> str:
    """Percent, two decimals; with several runs (seeds) mean ± sample standard deviation."""
    return mean_sd(statistics.fmean(values),
                   statistics.stdev(values) if len(values) > 1 else None, percent=True,
                   decimals=2)


def ablation_table(variants: dict[str, list[str | Path]], split: str = "test") -> str:
    """One row per variant: micro P/R/F1 and grounding Acc@0.5 (percent), averaged over the
    variant's runs (e.g. seeds)."""
    rows = ["| variant | runs | P | R | F1 | Acc@0.5 |", "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in variants.items():
        results = [_load(Path(run))[0][split] for run in runs]
        micro = [r["entities"]["micro"] for r in results]
        cells = [_mean_sd([m[key] for m in micro]) for key in ("precision", "recall", "f1")]
        grounding = [r["grounding"]["accuracy"] for r in results if "grounding" in r]
        acc = _mean_sd(grounding) if grounding else "n/a"
        rows.append(f"| {name} | {len(runs)} | {' | '.join(cells)} | {acc} |")
    return "\n".join(rows)
