from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.selection import run


@retrain_task("send-for-review", retries=0)
def send_for_review(settings: Settings, selection: run.Selection, project: int | None) -> run.Selection:
    """Each pick becomes a Label Studio task with the champion's boxes as its prediction; picks that could not be
    sent go back to the pool. Not retried: a retry would upload the picks already sent again.

    Args:
        settings: Label Studio URL and API key; the smallest box confidence drawn.
        selection: The recorded picks.
        project: The Label Studio project (none: only the CSV).
    """
    run.send(settings, selection, project)
    run.write_outputs(settings, selection)
    return selection
