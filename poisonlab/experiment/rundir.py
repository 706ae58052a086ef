"""A run folder: resolved config, environment, metrics, predictions, weights, log.

Every file is written atomically; `metrics.json` is written last, so its presence means the run
finished (a sweep skips such runs, so a killed sweep resumes)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from poisonlab import __version__
from poisonlab.io import atomic_write, write_json, write_jsonl, write_text
from poisonlab.metrics import DEFINITIONS_VERSION


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def finished(self) -> bool:
        return self.metrics_path.exists()

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text(encoding="utf-8"))

    def start(self, config: dict[str, Any], seed: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_json(self.path / "environment.json", environment(seed))
        (self.path / "log.txt").write_text("", encoding="utf-8")

    def log(self, line: str) -> None:
        with (self.path / "log.txt").open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def write_predictions(self, name: str, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / f"{name}.jsonl", rows)

    def write_weights(self, tensors: dict[str, torch.Tensor], name: str = "weights") -> None:
        from safetensors.torch import save_file
        atomic_write(self.path / f"{name}.safetensors",
                     lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))

    def finish(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_path, {"definitions_version": DEFINITIONS_VERSION, **metrics})


def environment(seed: int) -> dict[str, Any]:
    import transformers
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    return {"poisonlab": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft_version,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(), "seed": seed,
            "metrics_definitions_version": DEFINITIONS_VERSION}
