"""The run protocol every job kind follows, and the files of one run folder.

A run folder holds the resolved config (`config.yaml`), what ran (`run.json`: job kind, config
hash, versions, start and end time; `environment.json`), a log, predictions, weights and the
result (`metrics.json`, or a job's own record such as `release.json`), written last.

- **No stale results.** A finished folder is reused only when the hash of its resolved config
  equals the requested one; otherwise the run is refused with the differing fields named, unless
  the user passes `--force`. The hash ignores `name` and `output_dir` (where a run is kept is not
  what it is).
- **No half-written or mixed folders.** A run is built in a hidden sibling `.<name>.partial`
  under an exclusive lock (`.<name>.lock`) and renamed into place only when complete; a second
  writer gets a clear error, and a killed run leaves only the partial folder, which the next
  attempt discards (or resumes from, for jobs that checkpoint).
- **Names stay inside the output folder.** A run name is one safe path component.
- **One writer per job.** In a multi-process job (`accelerate launch`) only the main process
  decides reuse, locks, writes and renames; it tells the others its decision, and they run the
  same code (so their collective operations match) with a `RunDir` whose writes go nowhere.

Validation belongs before `RunSlot.building`: a run that fails there leaves nothing behind."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from poisonlab import __version__
from poisonlab.config import check_run_name
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.io import atomic_write, json_safe, write_json, write_jsonl, write_text
from poisonlab.config import stable_identity
from poisonlab.metrics import DEFINITIONS_VERSION
from poisonlab.runtime import Runtime, RuntimeConfig

RUN_RECORD = "run.json"
METRICS = "metrics.json"
NOT_PART_OF_IDENTITY = ("name", "output_dir")
class StaleRunError(PoisonlabError):
    """A finished run folder holds the result of a different config."""


class RunLockedError(PoisonlabError):
    """Another process is writing the same run folder."""


def _drop_default_runtime(section: Any) -> Any:
    """The `runtime:` fields that differ from their defaults (a run folder written before the
    section existed ran with the defaults)."""
    if not isinstance(section, dict):
        return section
    default = RuntimeConfig().model_dump(mode="json")
    changed = {k: v for k, v in section.items() if k not in default or v != default[k]}
    return changed or None


def config_identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """What a run is: its resolved config without where it is kept, without unset (null) fields,
    default `runtime:` values and later fields at their defaults, so a new optional field or
    section does not turn every finished run stale."""
    identity = {k: v for k, v in resolved.items() if k not in NOT_PART_OF_IDENTITY}
    if "runtime" in identity:
        identity["runtime"] = _drop_default_runtime(identity["runtime"])
    return stable_identity(identity)


def config_hash(resolved: dict[str, Any]) -> str:
    """A canonical hash of what a run is (its resolved config without name and output_dir)."""
    text = json.dumps(config_identity(resolved), sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two resolved configs differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        old, new = (config_identity(old), config_identity(new)) if not prefix else (
            stable_identity(old), stable_identity(new))
        if "name" in old and "name" in new and old["name"] != new["name"]:
            return [f"{prefix}name {old['name']!r} -> {new['name']!r}"]  # another component
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}{key}"
            if key not in new:
                out.append(f"{path} (only in the finished run)")
            elif key not in old:
                out.append(f"{path} (new: {new[key]!r})")
            else:
                out += differing_fields(old[key], new[key], f"{path}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


class RunDir:
    """The files of one run folder (finished, or being built by `RunSlot.building`).

    `writes` is False for the folder a non-main process of a multi-process job is handed: code
    that writes into `path` itself checks it."""

    writes = True

    def __init__(self, path: str | Path, marker: str = METRICS):
        self.path = Path(path)
        self.marker = marker

    @property
    def metrics_path(self) -> Path:
        return self.path / self.marker

    def finished(self) -> bool:
        return self.metrics_path.is_file()

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text(encoding="utf-8"))

    def read_config(self) -> dict[str, Any]:
        path = self.path / "config.yaml"
        if not path.is_file():
            return {}
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def recorded_hash(self) -> str:
        """The config hash the folder records (folders written before run.json existed: the
        hash of their config.yaml)."""
        record = self.path / RUN_RECORD
        if record.is_file():
            stored = json.loads(record.read_text(encoding="utf-8")).get("config_hash")
            if stored:
                return stored
        return config_hash(self.read_config())

    def start(self, config: dict[str, Any], seed: int, kind: str,
              runtime: dict[str, Any] | None = None) -> None:
        """Write the config, the run record and the environment (`runtime`: what
        `Runtime.describe` says ran)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_json(self.path / RUN_RECORD, {
            "kind": kind, "config_hash": config_hash(config), "poisonlab": __version__,
            "command": sys.argv, "started": _now()})
        write_json(self.path / "environment.json", environment(seed, runtime))
        (self.path / "log.txt").touch()

    def log(self, line: str) -> None:
        with (self.path / "log.txt").open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def write_predictions(self, name: str, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / f"{name}.jsonl", rows)

    def write_weights(self, tensors: dict[str, torch.Tensor], name: str = "weights") -> None:
        from safetensors.torch import save_file
        atomic_write(self.path / f"{name}.safetensors",
                     lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))

    def record_inputs(self, **inputs: Any) -> None:
        """Add what the run read (e.g. `data_files`: {file: sha256}) to its run record."""
        record_path = self.path / RUN_RECORD
        if record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            write_json(record_path, {**record, **inputs})

    def finish(self, metrics: dict[str, Any]) -> None:
        record_path = self.path / RUN_RECORD
        if record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            write_json(record_path, {**record, "finished": _now()})
        write_json(self.metrics_path, {"definitions_version": DEFINITIONS_VERSION, **metrics})


class _DetachedRunDir(RunDir):
    """The run folder as a non-main process of a multi-process job sees it: nothing is written;
    the result it finishes with is kept in memory, as the main process's file would read."""

    writes = False

    def __init__(self, path: str | Path, marker: str = METRICS):
        super().__init__(path, marker)
        self._metrics: dict[str, Any] | None = None

    def finished(self) -> bool:
        return self._metrics is not None

    def read_metrics(self) -> dict[str, Any]:
        if self._metrics is None:
            raise RuntimeError("the run has not finished")
        return json.loads(json.dumps(self._metrics, default=str))

    def start(self, config: dict[str, Any], seed: int, kind: str,
              runtime: dict[str, Any] | None = None) -> None:
        pass

    def log(self, line: str) -> None:
        pass

    def record_inputs(self, **inputs: Any) -> None:
        pass

    def write_predictions(self, name: str, rows: list[dict[str, Any]]) -> None:
        pass

    def write_weights(self, tensors: dict[str, torch.Tensor], name: str = "weights") -> None:
        pass

    def finish(self, metrics: dict[str, Any]) -> None:
        self._metrics = json_safe({"definitions_version": DEFINITIONS_VERSION, **metrics})


class RunSlot:
    """Where one run goes and what it is: decides reuse, guards against stale results and
    concurrent writers, and builds the folder atomically. With a multi-process `runtime` the
    main process does all of that and the others follow its decisions (see the module doc)."""

    def __init__(self, path: str | Path, resolved: dict[str, Any], *, kind: str, seed: int = 0,
                 marker: str = METRICS, runtime: Runtime | None = None):
        self.path = Path(path)
        check_run_name(self.path.name)
        self.resolved, self.kind, self.seed, self.marker = resolved, kind, seed, marker
        self.runtime = runtime
        self.hash = config_hash(resolved)

    @property
    def _shared(self) -> bool:
        return self.runtime is not None and self.runtime.distributed

    @property
    def partial_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.partial")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def status(self) -> str:
        """"finished" (reusable), "stale" (finished with another config) or "to run"."""
        existing = RunDir(self.path, self.marker)
        if not existing.finished():
            return "to run"
        return "finished" if existing.recorded_hash() == self.hash else "stale"

    def reusable(self, force: bool = False, quiet: bool = False) -> dict[str, Any] | None:
        """The result of a finished folder with the same config (saying so on stderr); None
        when the run must be built. A finished folder with another config is a StaleRunError
        unless `force`. Every process of a job gets the main process's answer."""
        if not self._shared:
            return self._reusable(force, quiet)
        outcome: tuple[str, Any] | None = None
        if self.runtime.is_main_process:
            try:
                outcome = ("decided", self._reusable(force, quiet))
            except Exception as exc:
                outcome = ("failed", exc)
        kind, value = self.runtime.broadcast(outcome)
        if kind == "failed":
            raise value
        return value

    def _reusable(self, force: bool, quiet: bool) -> dict[str, Any] | None:
        if force:
            return None
        existing = RunDir(self.path, self.marker)
        if not existing.finished():
            if self.path.exists() and not (self.path / "config.yaml").is_file():
                raise ConfigError(f"{self.path} exists and is not a poisonlab run folder; "
                                  "choose another name or output folder")
            return None
        if existing.recorded_hash() != self.hash:
            diff = differing_fields(existing.read_config(), self.resolved)
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise StaleRunError(f"{self.path} holds a finished run of a different config "
                                f"({shown or 'config hash differs'}); choose another name or "
                                "pass --force to replace it")
        if not quiet:
            print(f"poisonlab: {self.path} is finished with the same config; reusing it "
                  "(--force reruns it)", file=sys.stderr)
        return existing.read_metrics()

    @contextlib.contextmanager
    def building(self, *, resume: bool = False) -> Iterator[RunDir]:
        """Lock the slot and yield a RunDir in the partial folder; on success the folder is
        renamed into place, on failure the partial folder is removed. With `resume` a partial
        folder is kept, before and after, for a checkpointing job that decides itself whether
        its checkpoint fits the config. In a multi-process job the other processes get a RunDir
        that writes nothing, learn whether the main process could start (its error is theirs),
        and leave only when the folder is in place."""
        if not self._shared:
            with self._build(resume) as run:
                yield run
            return
        runtime = self.runtime
        if not runtime.is_main_process:
            failure = runtime.broadcast(None)
            if failure is not None:
                raise failure
            yield _DetachedRunDir(self.partial_path, self.marker)
            runtime.wait_for_everyone()
            return
        started = False
        try:
            with self._build(resume) as run:
                started = True
                runtime.broadcast(None)
                yield run
        except Exception as exc:
            if not started:
                runtime.broadcast(exc)
            raise
        runtime.wait_for_everyone()

    @contextlib.contextmanager
    def _build(self, resume: bool) -> Iterator[RunDir]:
        with _exclusive_lock(self.lock_path, self.path):
            partial = RunDir(self.partial_path, self.marker)
            if partial.path.exists() and not resume:
                shutil.rmtree(partial.path)
            partial.start(self.resolved, self.seed, self.kind,
                          self.runtime.describe() if self.runtime is not None else None)
            try:
                yield partial
                if not partial.finished():
                    raise RuntimeError(f"{self.kind} run ended without writing {self.marker}")
            except BaseException:
                if not resume:
                    shutil.rmtree(partial.path, ignore_errors=True)
                raise
            _replace_folder(partial.path, self.path)


def _replace_folder(source: Path, target: Path) -> None:
    """Rename `source` onto `target`; an existing target is moved aside first and removed after,
    so no reader ever sees a mix of the two."""
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.replaced-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
    os.replace(source, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path, folder: Path) -> Iterator[None]:
    import fcntl
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLockedError(f"{folder}: another poisonlab process is writing this run "
                                     f"(lock {lock_path.name} is held); wait for it to finish "
                                     "or choose another name") from None
            raise
        yield
    finally:
        handle.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit poisonlab runs from when it is a checkout ("+dirty" when tracked files
    differ from it); None for an installed package or without git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head, status = (subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                       text=True, timeout=10)
                        for args in (["rev-parse", "HEAD"],
                                     ["status", "--porcelain", "--untracked-files=no"]))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def environment(seed: int, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions, threads and seed, and what ran (`runtime`: `Runtime.describe()`; a job without
    one ran on the CPU in one process)."""
    import transformers
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    return {"poisonlab": __version__, "poisonlab_commit": source_commit(),
            "python": sys.version.split()[0],
            "platform": platform.platform(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft_version,
            "device": runtime["device"] if runtime else "cpu",
            "world_size": runtime["processes"] if runtime else 1, "runtime": runtime,
            "threads": torch.get_num_threads(), "seed": seed,
            "metrics_definitions_version": DEFINITIONS_VERSION}
