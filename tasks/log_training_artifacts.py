from __future__ import annotations

from tasks import retrain_task
from yolo_retrain import tracking
from yolo_retrain.config import Settings
from yolo_retrain.train_output import TrainOutput


@retrain_task("log-training-artifacts")
def log_training_artifacts(settings: Settings, run: tracking.RetrainRun, trained: TrainOutput) -> None:
    """results.csv, args.yaml, plots and train.log (Ultralytics' own output) into the run; the weights go once,
    into the logged model (register-model).

    Args:
        settings: The tracking URI.
        run: The retrain's MLflow run.
        trained: Ultralytics' training output folder.
    """
    tracking.log_training_artifacts(tracking.client_for(settings), run.run_id, trained)
