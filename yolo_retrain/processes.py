"""Child processes for the one-machine setup: the Prefect server, served deployments, a worker, the intake.

Shared by ``yolo-retrain serve``, the deployment tests and the benchmarks, so all three start the same
commands the same way.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from yolo_retrain.config import PROJECT_ROOT

T = TypeVar("T")
BIN = Path(sys.executable).parent
WORK_POOL = "yolo-retrain-process"


def prefect_server(port: int) -> list[str]:
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def served_deployments() -> list[str]:
    return [sys.executable, "-m", "deployments.serve"]


def worker(pool: str = WORK_POOL) -> list[str]:
    return [str(BIN / "prefect"), "worker", "start", "--pool", pool]


def intake() -> list[str]:
    return [str(BIN / "yolo-retrain"), "intake"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    """Call ``probe`` until it returns something truthy and return that; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_healthy(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200."""

    def healthy() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout, f"{url} to become healthy")


class ProcessGroup:
    """Start commands in the checkout with one environment; stop them all (reverse order) on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
        child = subprocess.Popen(cmd, env=self.env, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT if output else None)
        self.children.append(child)
        return child

    def run(self, cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
        """Run a command to completion; raise with its output if it fails."""
        result = subprocess.run(cmd, env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def alive(self) -> bool:
        return all(child.poll() is None for child in self.children)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in reversed(self.children):
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
