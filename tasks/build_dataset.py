from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset, build_dataset
from yolo_retrain.store import Correction


@retrain_task("build-dataset")
def build_retraining_dataset(settings: Settings, corrections: list[Correction]) -> BuiltDataset:
    """Base data + corrections, splits by hash, symlinked images, manifest and digest.

    Args:
        settings: The base data.yaml, the datasets folder and the holdout fraction.
        corrections: The claimed corrections.
    """
    return build_dataset(settings.base_data, corrections, settings.datasets_dir, settings.holdout_fraction)
