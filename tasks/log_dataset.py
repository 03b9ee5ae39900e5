from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset


@retrain_task("log-dataset")
def log_dataset(settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset) -> None:
    """corrections_applied.json, retraining_dataset_metadata.json, data.yaml, the manifest and a dataset input.

    Args:
        settings: The tracking URI.
        run: The retrain's MLflow run.
        dataset: The built retraining dataset.
    """
    tracking.log_dataset(tracking.client_for(settings), run.run_id, dataset)
