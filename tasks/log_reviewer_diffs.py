from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import reviewer_diffs, tracking
from yolo_retrain.config import Settings
from yolo_retrain.store import Correction, CorrectionStore


@retrain_task("log-reviewer-diffs")
def log_reviewer_diffs(settings: Settings, run: tracking.RetrainRun, corrections: list[Correction]) -> reviewer_diffs.DiffSummary:
    """Per-class table of what the reviewers changed against the model's predictions: an artifact and metrics.

    Args:
        settings: Where the correction store and the tracking server are.
        run: The retrain's MLflow run.
        corrections: The corrections this retrain claimed.
    """
    with CorrectionStore.from_settings(settings) as store:
        summary = reviewer_diffs.summarize(store, corrections)
    reviewer_diffs.log_to_mlflow(tracking.client_for(settings), run.run_id, summary)
    return summary
