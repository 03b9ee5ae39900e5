"""Crash recovery: one retrain at a time per home, and the leftovers of a killed one cleaned up.

A retrain holds an exclusive ``flock`` on ``<home>/retrain.lock`` for its whole life. The kernel drops it
when the process dies, even by SIGKILL, so whoever holds the lock knows that every other RUNNING retrain
run and every other claimed batch is an orphan: the run is ended KILLED with a reason, the claim released,
partial files deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.store import CorrectionStore

ORPHAN_REASON = "orphaned: the retrain process died before ending its run (recovered by {by})"


@dataclass
class Recovery:
    """What a recovery found and fixed."""

    killed_runs: list[str] = field(default_factory=list)
    released_batches: dict[str, int] = field(default_factory=dict)
    removed_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.killed_runs or self.released_batches or self.removed_files)


@contextmanager
def retrain_lock(settings: Settings, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the home's retrain lock; wait for it up to ``wait_seconds`` (None: as long as it takes)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.home / "retrain.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    raise RetrainError(f"another retrain is running on {settings.home} ({holder or 'unknown pid'})")
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def recover_orphans(settings: Settings, current_batch: str | None, by: str) -> Recovery:
    """End every orphaned retrain of this home. Call only while holding ``retrain_lock``."""
    recovery = Recovery()
    with CorrectionStore.from_settings(settings) as store:
        for batch in store.claiming_batches() - {current_batch}:
            recovery.released_batches[batch] = store.release(batch)
    client = tracking.client_for(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name) if not settings.experiment_id else None
    experiment_id = settings.experiment_id or (experiment.experiment_id if experiment else None)
    if experiment_id is not None:
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
            if run.data.tags.get(tracking.FLOW_RUN_TAG) == current_batch:
                continue
            reason = ORPHAN_REASON.format(by=by)
            registry.mark_run_failed(client, settings.model_name, run.info.run_id, reason)
            tracking.end_run(client, run.info.run_id, "KILLED", reason)
            recovery.killed_runs.append(run.info.run_id)
            for leftover in settings.runs_dir.glob(f"*-{run.info.run_id[:8]}"):
                shutil.rmtree(leftover, ignore_errors=True)
                recovery.removed_files.append(str(leftover))
    for partial in _partial_writes(settings):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        recovery.removed_files.append(str(partial))
    return recovery


def _partial_writes(settings: Settings) -> list[Path]:
    """Interrupted atomic writes: hidden temporaries beside their target (weights, dataset folders)."""
    return [p for folder in (settings.models_dir, settings.datasets_dir) if folder.exists() for p in folder.glob(".*")]
