from __future__ import annotations

from tasks import retrain_task
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset, build_dataset
from yolo_retrain.store import TrainingCorrections


@retrain_task("build-dataset")
def build_retraining_dataset(settings: Settings, corrections: TrainingCorrections) -> BuiltDataset:
    """Base data + every accepted correction + this batch, splits by hash, symlinked images, manifest and digest.

    Args:
        settings: The base data.yaml, the datasets folder and the holdout fraction.
        corrections: The claimed batch, the accepted corrections, how many are held as rejected.
    """
    return build_dataset(
        settings.base_data,
        corrections.batch,
        settings.datasets_dir,
        settings.holdout_fraction,
        accepted=corrections.accepted,
        held_rejected=corrections.held_rejected,
    )
