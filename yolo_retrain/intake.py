"""Correction intake shared by the CLI and the HTTP service: store, then announce a reached threshold.

The correction store is the source of truth for the count (Prefect's own event-count triggers drop events
and reset windows). When a submission makes the pending count reach the threshold, one Prefect event
``yolo-retrain.corrections.threshold-reached`` is sent; the deployment's trigger (threshold 1) starts a
retrain. If it cannot be sent, the correction is stored all the same, the announcement is re-armed for the
next submission, and the nightly retrain picks the backlog up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from yolo_retrain.config import Settings
from yolo_retrain.store import Correction, CorrectionStore

THRESHOLD_EVENT = "yolo-retrain.corrections.threshold-reached"
CORRECTIONS_RESOURCE = "yolo-retrain.corrections"

log = logging.getLogger(__name__)


def add_correction(store: CorrectionStore, settings: Settings, image: Path | bytes, labels: str | Path, **meta) -> Correction:
    """``store.add`` (validated, all or nothing), then announce the threshold if this reached it."""
    correction = store.add(image, labels, **meta)
    announce_threshold(store, settings)
    return correction


def import_corrections(store: CorrectionStore, settings: Settings, directory: Path, **meta) -> list[Correction]:
    """``store.import_dir`` (all or nothing), then announce the threshold if this reached it."""
    added = store.import_dir(directory, **meta)
    announce_threshold(store, settings)
    return added


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
