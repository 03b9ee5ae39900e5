from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.recovery import Recovery, recover_orphans


@retrain_task("recover-orphans")
def recover_orphaned_retrains(settings: Settings, batch_id: str) -> Recovery:
    """End runs and release claims of retrains whose process died; delete their partial files.

    Args:
        settings: Home, correction store and tracking URI.
        batch_id: This retrain's flow run id (its own run and claim are left alone).
    """
    recovery = recover_orphans(settings, batch_id, by=f"retrain {batch_id}")
    if recovery:
        print(f"recovered orphans: {recovery}")
    return recovery
