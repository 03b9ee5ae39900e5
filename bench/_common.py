"""Shared by the bench scripts: the machine a figure was measured on, medians, and writing the result."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    """CPU model, cores, memory, Python and the versions that matter, and the checkout's commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    versions = {}
    for package in ("ultralytics", "torch", "prefect", "mlflow", "fastapi", "uvicorn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "os": platform.platform(),
        "versions": versions,
        "gpus": gpus(),
        "git": _git(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _nvidia_smi(*query: str) -> list[list[str]]:
    """Rows of ``nvidia-smi --query-gpu=...`` as lists of fields; [] without nvidia-smi or when it fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line.strip()]


def _nvidia_smi_indices(device: str) -> set[str] | None:
    """nvidia-smi's indices of the GPUs an Ultralytics device string uses; None: count them all."""
    ids = [part.strip() for part in device.split(",")]
    if not all(i.isdigit() for i in ids):  # "cpu", "cuda", "mps"...
        return None
    # torch numbers the GPUs CUDA_VISIBLE_DEVICES lists; nvidia-smi numbers all of them.
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not visible:
        return set(ids)
    if not all(v.isdigit() for v in visible):  # GPU UUIDs: not worth mapping
        return None
    return {visible[int(i)] for i in ids if int(i) < len(visible)}


def gpus() -> list[str]:
    """One line per NVIDIA GPU (name, memory, driver): which card gave a figure."""
    rows = _nvidia_smi("name", "memory.total", "driver_version")
    return [f"{name}, {memory} MiB, driver {driver}" for name, memory, driver in rows]


class GpuSampler:
    """Samples GPU utilisation and memory in a thread while the ``with`` block runs (every ``interval`` s).

    ``device`` is the Ultralytics device string: for "0" or "0,1" only those GPUs count (their utilisation
    averaged, their memory summed); for anything else, every GPU nvidia-smi lists. Without nvidia-smi
    nothing is sampled and :meth:`summary` is None.
    """

    def __init__(self, device: str, interval: float = 0.5) -> None:
        self.indices = _nvidia_smi_indices(device)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory MiB)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = [r for r in _nvidia_smi("index", "utilization.gpu", "memory.used") if len(r) == 3]
            rows = [r for r in rows if self.indices is None or r[0] in self.indices]
            try:
                utils, memory = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
            except ValueError:  # "[N/A]" on GPUs that do not report it
                utils = []
            if utils:
                self.samples.append((sum(utils) / len(utils), sum(memory)))
            self._stop.wait(self.interval)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        utils = [u for u, _ in self.samples]
        return {
            "samples": len(self.samples),
            "util_mean_pct": sum(utils) / len(utils),
            "util_max_pct": max(utils),
            "memory_max_mib": max(m for _, m in self.samples),
        }


def _git() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def header(name: str) -> dict:
    """The start of every result: which benchmark, on what machine, from which command line."""
    return {"benchmark": name, "machine": machine(), "command": " ".join([f"bench/{name}.py", *sys.argv[1:]])}


def median(values) -> float:
    return float(statistics.median(values))


def emit(result: dict, out: Path | None) -> None:
    """Print the result as JSON (the last thing on stdout) and write it to ``out`` if given."""
    text = json.dumps(result, indent=2, default=str)
    print(text, flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
