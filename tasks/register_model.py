from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.hashing import file_sha256
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.recipe import trained_imgsz


@retrain_task("register-model")
def register_model(
    settings: Settings,
    run: tracking.RetrainRun,
    weights: str,
    lineage: dict[str, object],
    post: EvalMetrics,
    pre: EvalMetrics | None,
    imgsz: int | list[int] | None = None,
) -> ModelVersion:
    """Log the candidate as an MLflow logged model (pyfunc) of the run, with its holdout figures as the model's
    metrics, and register it; a retry finds the version it made of these weights.

    Args:
        settings: Registered model name.
        run: The retrain's MLflow run.
        weights: The candidate's weights.
        lineage: Version tags: dataset digest, corrections count, parent version, evaluation key.
        post: The candidate's holdout metrics.
        pre: The champion's, None before the first champion.
        imgsz: The size it was trained at (the recipe's), which the served model predicts at; None: read from the
            checkpoint (a second read of the weights).
    """
    client = tracking.client_for(settings)
    sha256 = file_sha256(Path(weights))
    existing = registry.find_version_for_run(client, settings.model_name, run.run_id, sha256)
    if existing is not None:
        return existing
    size = trained_imgsz(weights) if imgsz is None else max(imgsz) if isinstance(imgsz, list) else int(imgsz)
    model_id = registry.log_pyfunc_model(client, run.experiment_id, run.run_id, Path(weights), size)
    registry.log_model_metrics(client, run.run_id, model_id, str(lineage["dataset_digest"]), {"post": post, "pre": pre})
    tags = {**lineage, "weights_sha256": sha256}
    return registry.register_version(settings.model_name, model_id, tags)
