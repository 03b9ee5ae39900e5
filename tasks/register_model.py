from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.hashing import file_sha256


@retrain_task("register-model")
def register_model(settings: Settings, run: tracking.RetrainRun, weights: str, tags: dict[str, object]) -> ModelVersion:
    """Log the candidate as an MLflow pyfunc Model and register it; a retry finds the version it made.

    Args:
        settings: Registered model name, image size.
        run: The retrain's MLflow run.
        weights: The candidate's weights.
        tags: Version tags: run id, dataset digest, corrections count, parent version, metrics.
    """
    client = tracking.client_for(settings)
    existing = registry.find_version_for_run(client, settings.model_name, run.run_id)
    if existing is not None:
        return existing
    model_id = registry.log_pyfunc_model(run.experiment_id, run.run_id, Path(weights), settings.imgsz)
    tags = {**tags, "weights_sha256": file_sha256(Path(weights)), "run_id": run.run_id}
    return registry.register_version(settings.model_name, model_id, tags)
