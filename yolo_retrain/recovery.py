"""Crash recovery: one retrain at a time per home, and the leftovers of a killed one cleaned up.

A retrain holds an exclusive ``flock`` on ``<home>/retrain.lock`` for its whole life. The kernel drops it
when the process dies, even by SIGKILL, so whoever holds the lock knows that every other RUNNING retrain
run and every other claimed batch is an orphan: the run is ended KILLED with a reason, the claim released,
partial files deleted.

The gate's alias move is a retrain's commit point. A retrain that stops after it (a tag, an artifact or the
store failed) is not undone: its decision stands, the batch takes it, the run ends FINISHED (:func:`settle`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from yolo_retrain import approval, registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.errors import RetrainError
from yolo_retrain.screening import held_corrections
from yolo_retrain.store import CorrectionStore

ORPHAN_REASON = "orphaned: the retrain process died before ending its run (recovered by {by})"


@dataclass
class Recovery:
    """What a recovery found and fixed."""

    killed_runs: list[str] = field(default_factory=list)
    released_batches: dict[str, int] = field(default_factory=dict)
    removed_files: list[str] = field(default_factory=list)
    settled_runs: list[str] = field(default_factory=list)  # stopped after their gate's decision took effect: completed
    approvals: list[str] = field(default_factory=list)  # held candidates decided (timeout, superseded) or carried out

    def __bool__(self) -> bool:
        return bool(self.killed_runs or self.released_batches or self.removed_files or self.settled_runs or self.approvals)


@dataclass
class Cleanup:
    """What ending an abandoned retrain did: ``settled`` says how its gate's decision stood (None: nothing was
    decided, the batch released), ``problems`` what could not be done, one line each."""

    problems: list[str] = field(default_factory=list)
    settled: str | None = None


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


@contextmanager
def no_retrain_running(settings: Settings) -> Iterator[None]:
    """A person's decision on a held candidate, made only while no retrain runs: a running retrain's gate may hold a
    newer candidate (superseding this one) or promote, and two writers of the aliases must not interleave. Refused
    at once (a retrain can take hours), to be made again after it ends."""
    with ExitStack() as held:
        try:
            held.enter_context(retrain_lock(settings, wait_seconds=0))
        except RetrainError as exc:
            raise RetrainError(
                f"a retrain is running on {settings.home}: decide after it ends (its gate may hold a newer candidate)"
            ) from exc
        yield


def recover_orphans(settings: Settings, current_batch: str | None, by: str) -> Recovery:
    """End every orphaned retrain of this home. Call only while holding ``retrain_lock``."""
    recovery = Recovery()
    client = tracking.client_for(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name) if not settings.experiment_id else None
    experiment_id = settings.experiment_id or (experiment.experiment_id if experiment else None)
    if experiment_id is not None:  # runs first: a batch whose gate decided is settled, never released
        # Before them, a person's decision half carried out is finished (the runs then read its final tags); a
        # candidate awaiting approval past its deadline counts as refused.
        recovery.approvals = approval.reconcile(client, settings)
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
            batch = run.data.tags.get(tracking.FLOW_RUN_TAG)
            if batch is not None and settle(client, settings, batch, run.info.run_id):
                recovery.settled_runs.append(run.info.run_id)
                continue
            if batch == current_batch:  # this flow run's earlier attempt: this attempt may resume it
                continue
            _end_run(client, settings, run.info.run_id, "KILLED", ORPHAN_REASON.format(by=by))
            recovery.killed_runs.append(run.info.run_id)
            for leftover in settings.runs_dir.glob(f"*-{run.info.run_id[:8]}"):
                shutil.rmtree(leftover, ignore_errors=True)
                recovery.removed_files.append(str(leftover))
        if recovery.killed_runs:  # one may have died between installing the champion file and moving the alias
            registry.restore_local_champion(client, settings)
    with CorrectionStore.from_settings(settings) as store:
        for batch in store.claiming_batches() - {current_batch}:
            recovery.released_batches[batch] = store.release(batch)
    for partial in _partial_writes(settings):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        recovery.removed_files.append(str(partial))
    return recovery


def end_abandoned_retrain(
    settings: Settings, batch_id: str, run_id: str | None, status: str, reason: str, registered: bool = False
) -> Cleanup:
    """End a retrain that failed (``status`` FAILED) or was interrupted (KILLED).

    If it registered a version (``registered``: its gate may have run) and the gate's decision took effect, the
    decision stands (:func:`settle`). Otherwise its corrections go back to pending, the local champion file is
    restored if the gate had replaced it, its run (if one was opened) ends with ``status`` and tag
    ``failure_reason``, a version it registered is tagged ``run_failed``.

    Each part is attempted whatever happened to the other, and nothing is raised: the caller re-raises the
    retrain's own error, which a cleanup error must never replace. What could not be done is returned, one line
    each; the next retrain's recovery (or ``yolo-retrain doctor --fix``) finishes it.
    """
    cleanup = Cleanup()
    if run_id is not None and registered:
        try:
            client = tracking.client_for(settings)
            cleanup.settled = settle(client, settings, batch_id, run_id, reason)
            if cleanup.settled is None:
                registry.restore_local_champion(client, settings, failed_run_id=run_id)
        except Exception as exc:  # noqa: BLE001 — the decision unknown or half recorded: leave it to the recovery
            cleanup.problems.append(
                f"run {run_id} and batch {batch_id} left as they are (RUNNING, claimed) for the next retrain's recovery: "
                f"the gate's decision could not be settled or undone: {_one_line(exc)}"
            )
            return cleanup
        if cleanup.settled is not None:
            return cleanup
    try:
        with CorrectionStore.from_settings(settings) as store:
            store.release(batch_id)
    except Exception as exc:  # noqa: BLE001 — reported to the caller, next to the retrain's own error
        cleanup.problems.append(f"corrections of batch {batch_id} not released: {_one_line(exc)}")
    if run_id is not None:
        try:
            _end_run(tracking.client_for(settings), settings, run_id, status, reason)
        except Exception as exc:  # noqa: BLE001 — as above
            cleanup.problems.append(f"MLflow run {run_id} not ended {status}: {_one_line(exc)}")
    return cleanup


def settle(client: MlflowClient, settings: Settings, batch_id: str, run_id: str, failure: str | None = None) -> str | None:
    """If the gate's decision on ``run_id``'s version took effect (its alias moved), complete the retrain around it:
    the batch takes the decision (accepted into the version, or rejected and held), the local champion file matches
    the alias, the run ends FINISHED with ``failure`` (what stopped it after the gate) on record. Idempotent; each
    write comes after the one it depends on, so a failure part way leaves it for the next recovery. Returns what
    stood, None if no decision took effect."""
    committed = registry.committed_decision(client, settings.model_name, run_id)
    if committed is None:
        return None
    version, decision = committed
    tags = {"gate_decision": decision.label, "gate_reason": decision.reason}
    tracking.set_tags(client, run_id, tags | ({"failure_after_gate": failure[:4000]} if failure else {}))
    verdicts = _screening_verdicts(client, run_id)
    held = None if verdicts is None else held_corrections(verdicts, () if decision.promote else decision.dropped_classes)
    with CorrectionStore.from_settings(settings) as store:
        if held is None:  # a retrain from before screening: the batch follows the gate
            store.record_gate_decision(batch_id, str(version.version), decision)
        else:  # each correction on its own merit, as the retrain's screening decided (screening.json)
            store.record_screened_batch(batch_id, str(version.version), decision, held)
    registry.restore_local_champion(client, settings)
    registry.clear_run_failed(client, settings.model_name, str(version.version))
    tracking.end_run(client, run_id, "FINISHED")
    if held is None:
        status = "accepted" if decision.promote else "rejected"
        return f"the gate's decision stands: version {version.version} {decision.label}, batch {batch_id} {status} into it"
    return (
        f"the gate's decision stands: version {version.version} {decision.label}, batch {batch_id} recorded into it on its"
        f" own merit ({len(held)} held as suspicious, the rest accepted)"
    )


def _screening_verdicts(client: MlflowClient, run_id: str) -> list[dict] | None:
    """The verdicts the run's screening recorded (``screening.json``), None for a run from before screening (no
    ``screened_corrections`` metric). A screened run whose screening.json cannot be read raises: its batch is never
    settled as if unscreened (the next recovery tries again)."""
    import json
    import tempfile

    if "screened_corrections" not in client.get_run(run_id).data.metrics:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, "screening.json", tmp)
        return json.loads(Path(local).read_text())["verdicts"]


def _end_run(client: MlflowClient, settings: Settings, run_id: str, status: str, reason: str) -> None:
    registry.mark_run_failed(client, settings.model_name, run_id, reason)
    tracking.end_run(client, run_id, status, reason)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def _partial_writes(settings: Settings) -> list[Path]:
    """Interrupted atomic writes: hidden temporaries beside their target (weights, dataset folders)."""
    return [p for folder in (settings.models_dir, settings.datasets_dir) if folder.exists() for p in folder.glob(".*")]
