from __future__ import annotations

from prefect import get_run_logger

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.retention import housekeeping


@retrain_task("housekeeping", retries=0)
def retire_old_outputs(settings: Settings) -> str:
    """The retention policy after a finished retrain: old Ultralytics folders and checkpoints, weights files of old
    versions (kept in MLflow), unused dataset folders. A failure here is logged: the retrain it follows stands.

    Args:
        settings: The home's folders and the ``keep_*`` retention settings.
    """
    try:
        result = housekeeping(settings)
    except Exception as exc:  # noqa: BLE001 — the next retrain (or `yolo-retrain housekeeping`) tries again
        get_run_logger().warning(f"housekeeping skipped: {type(exc).__name__}: {exc}")
        return f"skipped: {exc}"
    summary = result.text().splitlines()[-1]
    get_run_logger().info(f"housekeeping: {summary}")
    return summary
