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

from mlflow import MlflowClient

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
            _end_run(client, settings, run.info.run_id, "KILLED", ORPHAN_REASON.format(by=by))
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


def end_abandoned_retrain(settings: Settings, batch_id: str, run_id: str | None, status: str, reason: str) -> list[str]:
    """End a retrain that failed (``status`` FAILED) or was interrupted (KILLED): its corrections go back to
    pending, its run (if one was opened) ends with ``status`` and tag ``failure_reason``, a version it registered
    is tagged ``run_failed``.

    Each part is attempted whatever happened to the other, and nothing is raised: the caller re-raises the
    retrain's own error, which a cleanup error must never replace. Returns what could not be done, one line each;
    the next retrain's recovery (or ``yolo-retrain doctor --fix``) finishes it.
    """
    problems = []
    try:
        with CorrectionStore.from_settings(settings) as store:
            store.release(batch_id)
    except Exception as exc:  # noqa: BLE001 — reported to the caller, next to the retrain's own error
        problems.append(f"corrections of batch {batch_id} not released: {_one_line(exc)}")
    if run_id is not None:
        try:
            _end_run(tracking.client_for(settings), settings, run_id, status, reason)
        except Exception as exc:  # noqa: BLE001 — as above
            problems.append(f"MLflow run {run_id} not ended {status}: {_one_line(exc)}")
    return problems


def _end_run(client: MlflowClient, settings: Settings, run_id: str, status: str, reason: str) -> None:
    registry.mark_run_failed(client, settings.model_name, run_id, reason)
    tracking.end_run(client, run_id, status, reason)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def _partial_writes(settings: Settings) -> list[Path]:
    """Interrupted atomic writes: hidden temporaries beside their target (weights, dataset folders)."""
    return [p for folder in (settings.models_dir, settings.datasets_dir) if folder.exists() for p in folder.glob(".*")]
