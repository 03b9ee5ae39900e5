from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from tasks import retrain_task
from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings


@retrain_task("save-model")
def save_model(settings: Settings, run: tracking.RetrainRun, version: ModelVersion, weights: str) -> Path:
    """``models/retrained_vN.pt`` (N = the registry version), checked against the recorded sha256.

    Args:
        settings: The local models folder.
        run: The retrain's MLflow run (gets the local path as a tag).
        version: The registered version.
        weights: The candidate's weights.
    """
    path = registry.save_local_weights(settings, version, Path(weights))
    tracking.set_tags(tracking.client_for(settings), run.run_id, {"local_model_path": path, "model_version": version.version})
    return path
