from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.store import Correction, CorrectionStore, registry_decisions


@retrain_task("claim-corrections")
def claim_corrections(settings: Settings, batch_id: str) -> list[Correction]:
    """Claim every pending correction for this retrain (idempotent for the same batch).

    Args:
        settings: Where the correction store is.
        batch_id: The Prefect flow run id; a retried flow run claims the same batch again.
    """
    with CorrectionStore.from_settings(settings) as store:
        # A store from before the lifecycle must be sorted first: its accepted rows belong in this dataset.
        store.sort_applied(registry_decisions(settings))
        return store.claim(batch_id)


@retrain_task("release-corrections")
def release_corrections(settings: Settings, batch_id: str) -> int:
    """Give the batch's corrections back to the pending pool (skipped or failed retrain).

    Args:
        settings: Where the correction store is.
        batch_id: The Prefect flow run id that claimed them.
    """
    with CorrectionStore.from_settings(settings) as store:
        return store.release(batch_id)
