from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.selection import run


@retrain_task("log-selection")
def log_selection(settings: Settings, selection: run.Selection) -> str:
    """The selection as an MLflow run (type=selection: counts, the CSV, the contact sheet) and a Prefect summary.

    Args:
        settings: Tracking URI and experiment.
        selection: What was scored, picked and sent.
    """
    run_id = run.log_run(settings, selection)
    create_markdown_artifact(markdown=selection.markdown(), key="selection-summary", description="What the champion picked for review")
    return run_id
