from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.training import evaluate


@retrain_task("evaluate", resumable=True)
def evaluate_on_holdout(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, weights: str, prefix: str
) -> EvalMetrics:
    """Validate weights on the holdout and log them as ``<prefix>_*`` metrics (pre: champion, post: candidate).

    Args:
        settings: Image size, batch and device.
        run: The retrain's MLflow run.
        dataset: Its val split is the holdout.
        weights: The model to evaluate.
        prefix: ``pre`` or ``post``.
    """
    metrics = evaluate(settings, weights, dataset.data_yaml, name=f"{prefix}-{run.run_id[:8]}")
    tracking.log_metrics(tracking.client_for(settings), run.run_id, metrics.as_mlflow(prefix))
    return metrics
