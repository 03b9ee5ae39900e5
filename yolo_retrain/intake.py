"""Correction intake shared by the CLI and the HTTP service: store, then announce a reached threshold.

The correction store is the source of truth for the count (Prefect's own event-count triggers drop events
and reset windows). When a submission makes the pending count reach the threshold, one Prefect event
``yolo-retrain.corrections.threshold-reached`` is sent; the deployment's trigger (threshold 1) starts a
retrain. If it cannot be sent, the correction is stored all the same, the announcement is re-armed for the
next submission, and the nightly retrain picks the backlog up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import ClassMapping, Export, open_export
from yolo_retrain.store import Correction, CorrectionStore, Submission

THRESHOLD_EVENT = "yolo-retrain.corrections.threshold-reached"
CORRECTIONS_RESOURCE = "yolo-retrain.corrections"

log = logging.getLogger(__name__)


def add_correction(store: CorrectionStore, settings: Settings, image: Path | bytes, labels: str | Path, **meta) -> Correction:
    """``store.add`` (validated, all or nothing), then announce the threshold if this reached it."""
    correction = store.add(image, labels, **meta)
    announce_threshold(store, settings)
    return correction


@dataclass(frozen=True)
class ImportResult:
    """What an import stored, from which format, and how the export's class ids were mapped."""

    format: str
    mapping: ClassMapping
    added: list[Correction]


def import_corrections(
    store: CorrectionStore,
    settings: Settings,
    path: Path,
    *,
    format: str | None = None,
    images: Path | None = None,
    report: Callable[[str], None] | None = None,
    **meta,
) -> ImportResult:
    """Import a labelling tool's export (folder, data.yaml or .zip; ``format`` detected when None), all or nothing.

    Its class ids are mapped to the project's by name (``report`` gets the mapping when it is not the identity);
    every image and label is read, mapped and validated before anything is stored. Then the threshold is announced
    if this reached it.
    """
    with open_export(Path(path), format, images) as export:
        if export.class_names is None and format is None:
            raise InvalidInput(unnamed_classes(export, store.class_names))
        mapping = ClassMapping.between(
            export.class_names, export.names_source, store.class_names, f"base data.yaml {settings.base_data}"
        )
        submissions = [
            Submission(r.image, mapping.apply(r.label_text, r.label_source), labels_source=r.label_source)
            for r in export.records
        ]
        if report is not None and not mapping.identity:
            report(f"{export.format} export: class ids mapped by name to the project's ({export.names_source}):")
            for line in mapping.describe():
                report(f"  {line}")
        added = store.add_many(submissions, **meta)
    announce_threshold(store, settings)
    return ImportResult(export.format, mapping, added)


def unnamed_classes(export: Export, project_names: list[str]) -> str:
    """Why an export that names no classes is refused unless its format was said: its ids would be taken on trust."""
    ids = ", ".join(f"{i} {name!r}" for i, name in enumerate(project_names))
    return (
        f"{export.names_source or export.root}: this {export.format} export names no classes (no 'names' in a "
        "data.yaml, no classes.txt, notes.json or obj.names), so its class ids cannot be checked against the "
        "project's by name; nothing was imported. Export it with its class names, or, if its ids are the project's "
        f"({ids}), say so with --format {export.format}"
    )


def announce_threshold(store: CorrectionStore, settings: Settings) -> bool:
    """Send the threshold event once per backlog; True if it was sent."""
    pending = store.take_threshold_crossing(settings.retrain_threshold)
    if pending is None:
        return False
    try:
        emit_threshold_event(pending, settings.retrain_threshold)
    except Exception as exc:  # any failure to reach Prefect: keep the correction, try again next time
        store.rearm_threshold()
        log.warning("could not announce %d pending corrections to Prefect (%s); the nightly retrain will pick them up", pending, exc)
        return False
    log.info("announced %d pending corrections (threshold %d)", pending, settings.retrain_threshold)
    return True


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
