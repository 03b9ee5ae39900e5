from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.selection import run
from yolo_retrain.selection.pool import PoolImage


@retrain_task("gather-pool")
def gather_pool(settings: Settings, sources: list[str], include_samples: bool) -> list[PoolImage]:
    """The images to choose from: the files ``sources`` name and the samples posted to the intake (retention applied).

    Args:
        settings: The sample store (database, samples folder) and its retention limits.
        sources: Folders, globs or list files of production images.
        include_samples: Also the samples posted to the intake (``POST /samples``) that no selection picked yet.
    """
    return run.gather_pool(settings, sources, include_samples)
