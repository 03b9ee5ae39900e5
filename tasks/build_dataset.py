from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import console
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset, build_dataset
from yolo_retrain.store import CorrectionStore


@retrain_task("build-dataset")
def build_retraining_dataset(settings: Settings, batch_id: str) -> BuiltDataset:
    """Base data + every accepted correction + the claimed batch, splits by hash, symlinked images, manifest and digest.

    Args:
        settings: The base data.yaml, the datasets folder, the holdout fraction and the correction store.
        batch_id: The claimed batch (the flow run id). The corrections are read from the store here, not passed
            in: Prefect would walk every one of the accepted corrections in this task's inputs.
    """
    with CorrectionStore.from_settings(settings) as store:
        corrections = store.training_corrections(batch_id)
    with console.stage("dataset", info=f"{len(corrections.batch)} corrections in this batch") as bar:
        built = build_dataset(
            settings.base_data,
            corrections.batch,
            settings.datasets_dir,
            settings.holdout_fraction,
            accepted=corrections.accepted,
            held_rejected=corrections.held_rejected,
        )
        bar.update(completed=1, total=1, info=_describe(built))
    return built


def _describe(built: BuiltDataset) -> str:
    c = built.counts
    text = f"{c.get('train_images', '?')} train, {c.get('val_images', '?')} holdout, {c.get('corrected_images', '?')} corrected"
    return f"{text}; digest {built.digest[:12]}" + (" (reused)" if built.reused else "")
