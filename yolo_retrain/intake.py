"""Correction intake shared by the CLI and the HTTP service: store, then announce a reached threshold.

The correction store is the source of truth for the count (Prefect's own event-count triggers drop events
and reset windows). When a submission makes the pending count reach the threshold, one Prefect event
``yolo-retrain.corrections.threshold-reached`` is sent; the deployment's trigger (threshold 1) starts a
retrain. If it cannot be sent, the correction is stored all the same, the announcement is re-armed for the
next submission, and the nightly retrain picks the backlog up. Whatever fails after the correction committed
(the threshold check, the event, the re-arming) never reads as "nothing was stored": the result says what was
stored and what became of the announcement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.formats import ClassMapping, Export, open_export
from yolo_retrain.image_metadata import read_sidecar, sidecar_beside
from yolo_retrain.store import Correction, CorrectionStore, Submission

THRESHOLD_EVENT = "yolo-retrain.corrections.threshold-reached"
CORRECTIONS_RESOURCE = "yolo-retrain.corrections"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announcement:
    """What became of the threshold announcement after corrections were stored (they are stored whatever it says)."""

    sent: bool = False
    problem: str | None = None  # what failed after the commit, and what picks the backlog up; None if nothing did


@dataclass(frozen=True)
class Added:
    """One stored correction, and what became of the threshold announcement after it (``announce_threshold``)."""

    correction: Correction
    announcement: Announcement


def add_correction(
    store: CorrectionStore, settings: Settings, image: Path | bytes, labels: str | Path, **meta
) -> Added:
    """``store.add`` (validated, all or nothing), then announce the threshold if this reached it."""
    correction = store.add(image, labels, **meta)
    return Added(correction, announce_threshold(store, settings))


@dataclass(frozen=True)
class ImportResult:
    """What an import stored, from which format, how the export's class ids were mapped, and what became of the
    threshold announcement after it."""

    format: str
    mapping: ClassMapping
    added: list[Correction]
    announcement: Announcement = Announcement()


def import_corrections(
    store: CorrectionStore,
    settings: Settings,
    path: Path,
    *,
    format: str | None = None,
    images: Path | None = None,
    report: Callable[[str], None] | None = None,
    metadata: Path | None = None,
    **meta,
) -> ImportResult:
    """Import a labelling tool's export (folder, data.yaml or .zip; ``format`` detected when None), all or nothing.

    Its class ids are mapped to the project's by name (``report`` gets the mapping when it is not the identity);
    every image and label is read, mapped and validated before anything is stored. Then the threshold is announced
    if this reached it. Image metadata (the gate's slices) comes from the CSV ``metadata`` names, else from the
    export's own ``metadata.csv`` (:mod:`image_metadata`); a row naming no image of the export refuses the import.
    """
    with open_export(Path(path), format, images) as export:
        if export.class_names is None and format is None:
            raise InvalidInput(unnamed_classes(export, store.class_names))
        mapping = ClassMapping.between(
            export.class_names, export.names_source, store.class_names, f"base data.yaml {settings.base_data}"
        )
        sidecar = metadata if metadata is not None else sidecar_beside(export.root)
        by_image = read_sidecar(sidecar, [str(r.image) for r in export.records], "export") if sidecar else {}
        submissions = [
            Submission(
                r.image, mapping.apply(r.label_text, r.label_source), labels_source=r.label_source,
                metadata=by_image.get(str(r.image)),
            )
            for r in export.records
        ]
        if report is not None and not mapping.identity:
            report(f"{export.format} export: class ids mapped by name to the project's ({export.names_source}):")
            for line in mapping.describe():
                report(f"  {line}")
        added = store.add_many(submissions, **meta)
    return ImportResult(export.format, mapping, added, announce_threshold(store, settings))


def unnamed_classes(export: Export, project_names: list[str]) -> str:
    """Why an export that names no classes is refused unless its format was said: its ids would be taken on trust."""
    ids = ", ".join(f"{i} {name!r}" for i, name in enumerate(project_names))
    return (
        f"{export.names_source or export.root}: this {export.format} export names no classes (no 'names' in a "
        "data.yaml, no classes.txt, notes.json or obj.names), so its class ids cannot be checked against the "
        "project's by name; nothing was imported. Export it with its class names, or, if its ids are the project's "
        f"({ids}), say so with --format {export.format}"
    )


def announce_threshold(store: CorrectionStore, settings: Settings) -> Announcement:
    """Send the threshold event once per backlog. Called after corrections were committed: never raises for a
    failure (that would read as "nothing was stored"); the Announcement says what failed and what picks it up."""
    threshold = settings.retrain_threshold
    try:
        pending = store.take_threshold_crossing(threshold)
    except Exception as exc:  # not taken (rolled back): still armed, so the next submission checks again
        return _failed(
            f"stored, but checking the retrain threshold ({threshold}) afterwards failed ({_why(exc)}): the next "
            "submission checks it again, and the nightly retrain takes the pending corrections in any case"
        )
    if pending is None:
        return Announcement()
    backlog = f"stored; {pending} corrections are pending (threshold {threshold})"
    try:
        emit_threshold_event(pending, threshold)
    except Exception as exc:  # any failure to reach Prefect: keep the correction, try again next time
        try:
            store.rearm_threshold()
        except Exception as rearm_exc:  # taken but not re-armed: only the next claim re-arms it
            return _failed(
                f"{backlog}, but announcing it to Prefect failed ({_why(exc)}) and it could not be re-armed "
                f"({_why(rearm_exc)}): no later submission announces this backlog; the nightly retrain (or "
                "`yolo-retrain run`) takes the pending corrections and re-arms it"
            )
        return _failed(
            f"{backlog}, but announcing it to Prefect failed ({_why(exc)}): the next submission announces it "
            "again, and the nightly retrain takes them in any case"
        )
    log.info("announced %d pending corrections (threshold %d)", pending, threshold)
    return Announcement(sent=True)


def _failed(problem: str) -> Announcement:
    log.warning("%s", problem)
    return Announcement(problem=problem)


def _why(exc: BaseException) -> str:
    """A failure in a few words (a busy store's own message says "nothing was written", untrue here)."""
    if isinstance(exc, TransientError):
        return "the correction database was busy"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def emit_threshold_event(pending: int, threshold: int) -> None:
    """POST the event to the Prefect API; raises if no server is configured or it does not answer."""
    from prefect.client.orchestration import get_client
    from prefect.events import Event
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:  # never start a throwaway ephemeral server just to announce
        raise RuntimeError("no Prefect server configured (PREFECT_API_URL is not set)")

    event = Event(
        event=THRESHOLD_EVENT,
        resource={"prefect.resource.id": CORRECTIONS_RESOURCE},
        payload={"pending": pending, "threshold": threshold},
    )
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events", json=[event.model_dump(mode="json")])
        response.raise_for_status()
