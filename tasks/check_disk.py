from __future__ import annotations

from prefect import get_run_logger

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.disk import check_free_space


@retrain_task("check-disk-space", retries=0)
def check_disk_space(settings: Settings) -> str:
    """Refuse the retrain now, with the figures, if a disk it writes to cannot hold it (not hours into training).

    Args:
        settings: Home folders, artifact location, ``min_free_disk_mb``, the champion or base model (its size).
    """
    figures = check_free_space(settings)
    get_run_logger().info(f"disk space: {figures}")
    return figures
