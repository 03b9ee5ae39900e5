from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import console
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
    with console.stage("dataset", info=f"{len(corrections)} corrections") as bar:
        built = build_dataset(settings.base_data, corrections, settings.datasets_dir, settings.holdout_fraction)
        bar.update(completed=1, total=1, info=_describe(built))
    return built


def _describe(built: BuiltDataset) -> str:
    c = built.counts
    text = f"{c.get('train_images', '?')} train, {c.get('val_images', '?')} holdout, {c.get('corrected_images', '?')} corrected"
    return f"{text}; digest {built.digest[:12]}" + (" (reused)" if built.reused else "")
