"""Training progress as a Prefect progress artifact, so the Prefect UI shows how far a retrain is."""

from __future__ import annotations

import logging

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext

log = logging.getLogger(__name__)


def callbacks(description: str = "Training epochs completed") -> dict:
    """Callbacks for ``YOLO.add_callback``; a no-op outside a Prefect task run (plain function calls, tests)."""
    if TaskRunContext.get() is None:
        return {}
    artifact_id = create_progress_artifact(progress=0.0, key="training-progress", description=description)

    def on_fit_epoch_end(trainer) -> None:
        try:
            update_progress_artifact(artifact_id, progress=min(100.0, 100.0 * (trainer.epoch + 1) / trainer.epochs))
        except Exception as exc:  # noqa: BLE001 — a progress bar must never stop training (e.g. in a DDP worker)
            log.debug("progress not updated: %s", exc)

    return {"on_fit_epoch_end": on_fit_epoch_end}
