from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.callbacks import prefect_progress
from yolo_retrain.config import Settings
from yolo_retrain.dataset import BuiltDataset
from yolo_retrain.recipe import Recipe
from yolo_retrain.train_output import TrainOutput
from yolo_retrain.training import log_path, train


@retrain_task("train-candidate", retries=1, resumable=True)
def train_candidate(
    settings: Settings, run: tracking.RetrainRun, dataset: BuiltDataset, start_weights: str, recipe: Recipe
) -> TrainOutput:
    """Train from the champion's weights; per-epoch metrics go into the retrain's run, progress to the UI.

    Args:
        settings: Output dirs and the tracking server.
        run: The retrain's MLflow run (named explicitly: this runs in a worker thread).
        dataset: The retraining dataset.
        start_weights: The champion's verified weights, or the base model on the first retrain.
        recipe: Every train argument (epochs, image size, batch, device, hyperparameters) and its source.
    """
    tracking.client_for(settings)  # checks a tracking server answers before hours of training
    return train(
        settings,
        dataset.data_yaml,
        start_weights,
        name=f"train-{run.run_id[:8]}",
        recipe=recipe,
        run_id=run.run_id,
        hooks=[prefect_progress.callbacks()],  # the bar in Prefect's UI
        log_file=log_path(settings, run.run_id),
    )
