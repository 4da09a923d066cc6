"""Runs that survive a crash, and results that say how they were made: the run store, provenance, the envelope.

Every task's benchmark writes into an output folder laid out the same way::

    config.yaml      the effective configuration
    runs/...json     one record per finished run, keyed by a hash of everything that determines it
    results.json     the results envelope (:func:`envelope`), from which tables and plots are made

A record is written atomically the moment its run finishes, so an interrupted benchmark resumes
where it stopped: a run whose record exists *with the same key* is not recomputed. A record whose
key differs (the settings changed) is moved to ``runs/superseded/`` before the new one is written,
so nothing finished is ever lost.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dualoptim.io import read_json, write_json_atomic, write_text_atomic

__all__ = ["ENVELOPE_KEYS", "RunStore", "environment", "envelope", "open_output", "stable_hash", "slug"]

#: packages whose versions every provenance block records when they are installed
VERSIONED = ("numpy", "scipy", "scikit-learn", "transformers", "tokenizers", "accelerate", "datasets", "torchvision", "diffusers")
#: the top level of every results.json, in this order; tasks add their own keys after these.
ENVELOPE_KEYS = ("task", "config", "environment", "command", "rows", "seconds")


def stable_hash(payload: Any) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON (a run or cache key)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def slug(name: str) -> str:
    """A file-name-safe spelling of a method, loss or strategy name (``dual+`` -> ``dualplus``)."""
    return name.replace("+", "plus").replace("/", "_").replace(" ", "-")


class RunStore:
    """Keyed, atomically written per-run records under ``folder``.

    >>> store = RunStore(out / "runs")
    >>> record = store.get("SalUn__dual__seed0", key)        # None unless finished with this key
    >>> store.put("SalUn__dual__seed0", key, {"metrics": ...})
    """

    def __init__(self, folder: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        #: stored in every record written, so that a resumed results.json still says which code
        #: (commit, threads, CPU) made each run it reuses
        self.provenance = provenance

    def path(self, name: str) -> Path:
        """Where record ``name`` lives; ``/`` in a name makes sub-folders (``task1/IDKplusGD__dual``)."""
        return self.folder / f"{name}.json"

    def get(self, name: str, key: str) -> dict[str, Any] | None:
        """The finished record ``name`` when it exists and was made with ``key``, else None."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            record = read_json(path)
        except ValueError:
            return None  # a corrupt file (written by hand, or by an old version) is recomputed
        return record if isinstance(record, dict) and record.get("key") == key else None

    def put(self, name: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (with its key) atomically; a record of other settings moves to superseded/."""
        path = self.path(name)
        if path.is_file():
            try:
                old_key = read_json(path).get("key", "nokey")
            except (ValueError, AttributeError):
                old_key = "corrupt"
            if old_key != key:
                keep = self.folder / "superseded" / f"{name}-{old_key}.json"
                keep.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, keep)
        record = {**record, "key": key}
        if self.provenance is not None:
            record["provenance"] = self.provenance
        write_json_atomic(path, record)
        return record

    def get_or_run(self, name: str, key: str, run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The stored record, or ``run()``'s, stored; and whether it was computed now."""
        record = self.get(name, key)
        if record is not None:
            return record, False
        return self.put(name, key, run()), True


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(command: Sequence[str] | None = None) -> dict[str, Any]:
    """Provenance stored with every result: command, commit, versions, hardware, threads.

    Benchmarks call it when they are built, before any long work, so that the commit and the
    state of ``src/`` it records are those of the code that runs (edits made during an hour-long
    run do not change what was imported).
    """
    import torch

    root = Path(__file__).resolve().parents[2]
    commit = _git(["rev-parse", "HEAD"], root)
    status = _git(["status", "--porcelain", "src"], root) if commit else None
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed: no version to record
    return {
        # the command as typed; a library call records the Python command line that made it
        "command": shlex.join(command) if command is not None else shlex.join([Path(sys.executable).name, *sys.argv]),
        "commit": commit,
        "uncommitted_changes": None if status is None else bool(status),
        "versions": versions,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def open_output(out: str | os.PathLike[str], config: dict[str, Any], env: dict[str, Any]) -> RunStore:
    """Start (or resume) a benchmark's output folder: write ``config.yaml``, return its run store.

    Records the store writes carry the commit, threads and CPU of ``env`` (:func:`environment`).
    """
    import yaml

    out = Path(out)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    provenance = {k: env.get(k) for k in ("commit", "uncommitted_changes", "torch_threads", "cpu")}
    return RunStore(out / "runs", provenance)


def envelope(
    task: str,
    config: dict[str, Any],
    environment: dict[str, Any],
    rows: list[dict[str, Any]],
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """The results.json of any task: ``task, config, environment, command, rows, seconds``, then ``extra``."""
    clash = sorted(set(extra) & set(ENVELOPE_KEYS))
    if clash:
        raise ValueError(f"task-specific results keys clash with the envelope: {clash}")
    return {
        "task": task,
        "config": config,
        "environment": environment,
        "command": environment.get("command"),
        "rows": rows,
        "seconds": seconds,
        **extra,
    }
