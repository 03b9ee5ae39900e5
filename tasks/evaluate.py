from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.metrics import EvalMetrics, evaluation_key
from yolo_retrain.training import evaluate


def holdout_key(settings: Settings, dataset: BuiltDataset) -> str:
    """The evaluation setup of this retrain: its holdout, image size, batch, device and Ultralytics version."""
    return evaluation_key(dataset.holdout_digest, settings.imgsz, settings.batch, settings.device)


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


@retrain_task("evaluate-champion", resumable=True)
def evaluate_champion(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, champion: registry.Champion
) -> EvalMetrics:
    """The champion's holdout figures, logged as ``pre_*``: those recorded on its version when they were measured
    on this same holdout and setup (validation is deterministic), else a fresh evaluation.

    Args:
        settings: Image size, batch and device.
        run: The retrain's MLflow run; tag ``pre_metrics_source`` says where the figures came from.
        dataset: Its val split is the holdout.
        champion: The current champion version, with its tags.
    """
    recorded = champion.recorded_metrics(holdout_key(settings, dataset))
    if recorded is None:
        metrics, source = evaluate(settings, champion.weights, dataset.data_yaml, name=f"pre-{run.run_id[:8]}"), "evaluated"
    else:
        metrics, source = recorded, f"recorded on version {champion.version} (same holdout and setup)"
    client = tracking.client_for(settings)
    tracking.log_metrics(client, run.run_id, metrics.as_mlflow("pre"))
    tracking.set_tags(client, run.run_id, {"pre_metrics_source": source})
    return metrics
